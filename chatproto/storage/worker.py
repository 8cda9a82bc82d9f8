"""A database's one worker thread: its batches and reads run there, in order."""

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool


class OneWorker:
    """
    Runs calls, in order, on one thread of its own; with no reactor (unit
    tests on a Clock) on the calling thread instead.
    """

    def __init__(self, reactor, name: str):
        self.reactor = reactor
        self._pool = None
        if reactor is not None:
            self._pool = ThreadPool(1, 1, name=name)
            self._pool.start()

    def run(self, function, *args) -> defer.Deferred:
        if self._pool is None:
            return defer.maybeDeferred(function, *args)
        return threads.deferToThreadPool(self.reactor, self._pool, function, *args)

    def run_last(self, function) -> defer.Deferred:
        """Run C{function} after everything queued, then stop the thread."""
        d = self.run(function)
        pool, self._pool = self._pool, None
        if pool is not None:

            def stop(result):
                pool.stop()
                return result

            d.addBoth(stop)
        return d
