"""A database's one worker thread: its batches and reads run there, in order."""

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

log = Logger()


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

    @property
    def running(self) -> bool:
        """Whether calls still go to the thread (L{run_last} has not been called)."""
        return self._pool is not None

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


def in_chunks(run, step, size: int, going) -> defer.Deferred:
    """
    Background work in small pieces: C{run(step, size)} again and again
    until C{step} returns 0 or C{going()} turns false. Each piece is queued
    once the one before is done, so whatever the worker was given meanwhile
    (a batch, a read) goes first. The Deferred fires when it ends; a failure
    is logged.
    """
    finished = defer.Deferred()

    def next_piece(more):
        if more and going():
            run(step, size).addCallbacks(next_piece, failed)
        else:
            finished.callback(None)

    def failed(failure):
        if going():
            log.failure("Background work on the database failed", failure)
        finished.callback(None)

    next_piece(True)
    return finished
