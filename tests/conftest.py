"""Private PostgreSQL and Redis servers, started once per test session when a test asks."""

import itertools
import tempfile

import pytest

from chatproto.cluster.local import LocalPostgres, LocalRedis, postgres_bin, redis_bin

_names = itertools.count(1)


class PostgresServer:
    def __init__(self, local: LocalPostgres):
        self.local = local
        self.url = local.url

    def fresh_database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        name = f"test_{next(_names)}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {name}")
            db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def postgres_server():
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed")
    directory = tempfile.mkdtemp(prefix="chatproto-pg-")
    local = LocalPostgres(directory).start()
    yield PostgresServer(local)
    local.stop("immediate")


@pytest.fixture(scope="class")
def postgres_class(request, postgres_server):
    request.cls.postgres = postgres_server


@pytest.fixture(scope="session")
def redis_binary():
    if redis_bin() is None:
        pytest.skip("redis-server is not installed")
    return LocalRedis
