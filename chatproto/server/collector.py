"""
The cyclic garbage collector, tuned for a long-running server.

With CPython's default thresholds (700, 10, 10) a collection of the young
generation runs every 700 net allocations, and every tenth of those
re-traverses whatever survived: under load that is every message in flight
(its Deferred, its event, its reply slot), so the collector took 19 % of the
server's CPU on the private-message benchmark (gc.callbacks timing, issue 17).
Almost every object of the hot path dies by reference counting; the
collector is only there for the rare cycle (a Failure and its traceback, a
closed connection), so it can run far less often. The objects made at
start-up (accounts, groups, modules) live as long as the process: frozen,
no collection traverses them again.
"""

import gc

from twisted.application import service

# Young generation every 100,000 net allocations; the middle one every 20 of
# those, the oldest every 100 of the middle ones. (Issue 25: at 20,000, under a
# deep pipeline of private messages, each young collection found hundreds of
# thousands of live objects, the messages in flight, and 30 of them took 0.4-0.5
# s of 4.4-5 s of the server's CPU, gc.callbacks timing; at 100,000 none ran
# during the 200,000 messages, and a message cost 10-20 % less.)
SERVING_THRESHOLDS = (100_000, 20, 100)


def tune_for_serving() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_THRESHOLDS)


class CollectorTuning(service.Service):
    """Tunes the collector once everything before it in the server has started."""

    def startService(self):
        super().startService()
        tune_for_serving()
