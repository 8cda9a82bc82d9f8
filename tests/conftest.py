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


@pytest.fixture(autouse=True)
def _trial_mktemp_in_pytest_tmp(monkeypatch, tmp_path_factory):
    # trial's mktemp() names a path under the working directory (trial runs in
    # _trial_temp/); under pytest that would leave tests.test_x/ folders in the
    # clone, so the same calls get paths in pytest's temporary directory.
    from twisted.trial import unittest as trial

    base = tmp_path_factory.mktemp("trial")
    counter = iter(range(1_000_000))
    monkeypatch.setattr(trial.SynchronousTestCase, "mktemp",
                        lambda self: str(base / f"t{next(counter)}"))
