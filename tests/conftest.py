"""pytest's side of tests/services.py: the same private servers, as fixtures."""

import unittest

import pytest

from .services import shared_postgres


@pytest.fixture(scope="session")
def postgres_server():
    try:
        return shared_postgres()
    except unittest.SkipTest as e:
        pytest.skip(str(e))


@pytest.fixture(scope="class")
def postgres_class(request, postgres_server):
    request.cls.postgres = postgres_server
