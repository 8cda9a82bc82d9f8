"""
Private PostgreSQL and Redis servers for the tests, started once per test run
when a test first asks (pytest's fixtures and trial's test cases alike) and
stopped when the run ends.
"""

import atexit
import itertools
import shutil
import tempfile
import unittest

from chatproto.cluster.local import LocalPostgres, LocalRedis, postgres_bin, redis_bin

_names = itertools.count(1)
_postgres = None
_redis = None


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


def shared_postgres() -> PostgresServer:
    """The run's PostgreSQL server (raises SkipTest when PostgreSQL is not installed)."""
    global _postgres
    if _postgres is None:
        if postgres_bin() is None:
            raise unittest.SkipTest("PostgreSQL is not installed")
        directory = tempfile.mkdtemp(prefix="chatproto-pg-")
        local = LocalPostgres(directory).start()
        atexit.register(shutil.rmtree, directory, True)
        atexit.register(local.stop, "immediate")
        _postgres = PostgresServer(local)
    return _postgres


def shared_redis():
    """The run's redis-server (raises SkipTest when it is not installed)."""
    global _redis
    if _redis is None:
        local_redis = redis_class()
        directory = tempfile.mkdtemp(prefix="chatproto-redis-")
        _redis = local_redis(directory).start()
        atexit.register(shutil.rmtree, directory, True)
        atexit.register(_redis.stop)
    return _redis


def redis_class():
    """The class that runs a private redis-server (raises SkipTest when it is not installed)."""
    if redis_bin() is None:
        raise unittest.SkipTest("redis-server is not installed")
    return LocalRedis


class NeedsRedis:
    """Test cases that use C{self.redis}: the run's redis-server, started at first use."""

    @property
    def redis(self):
        return shared_redis()


class NeedsPostgres:
    """Test cases that use C{self.postgres}: under pytest its fixture sets it, under trial it starts here."""

    @property
    def postgres(self) -> PostgresServer:
        return shared_postgres()
