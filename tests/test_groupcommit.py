"""Group commit: batches arriving while a transaction runs wait, merged, for the next one."""

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from chatproto.storage.groupcommit import GroupCommit


class FakeDatabase:
    """Records each transaction; the test decides when it ends and whether it fails."""

    def __init__(self):
        self.transactions = []  # [ops, Deferred]

    def run_commit(self, ops):
        d = defer.Deferred()
        self.transactions.append((list(ops), d))
        return d

    def end(self, index=-1, error=None):
        _ops, d = self.transactions[index]
        if error is None:
            d.callback(None)
        else:
            d.errback(error)


class GroupCommitTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(100)
        self.db = FakeDatabase()
        self.group = GroupCommit(self.clock, self.db.run_commit, interval=0.004)

    def results(self, d):
        out = []
        d.addBoth(out.append)
        return out

    def test_a_quiet_database_commits_at_once(self):
        done = self.results(self.group.commit(["a"]))
        self.assertEqual([ops for ops, _ in self.db.transactions], [["a"]])
        self.assertEqual(done, [])
        self.db.end()
        self.assertEqual(done, [None])

    def test_batches_during_a_transaction_join_the_next_one(self):
        first = self.results(self.group.commit(["a"]))
        second = self.results(self.group.commit(["b"]))
        third = self.results(self.group.commit(["c", "d"]))
        self.assertEqual(len(self.db.transactions), 1)
        self.clock.advance(0.001)
        self.db.end(0)
        self.assertEqual((first, second, third), ([None], [], []))
        self.assertEqual(len(self.db.transactions), 1)  # not before the interval is over
        self.clock.advance(0.003)
        self.assertEqual([ops for ops, _ in self.db.transactions], [["a"], ["b", "c", "d"]])
        self.db.end(1)
        self.assertEqual((second, third), ([None], [None]))

    def test_start_now_hands_held_batches_over_before_a_read(self):
        self.group.commit(["a"])
        self.group.commit(["b"])
        self.group.start_now()
        self.assertEqual([ops for ops, _ in self.db.transactions], [["a"], ["b"]])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_failed_merge_fails_only_the_bad_batch(self):
        self.group.commit(["a"])
        good = self.results(self.group.commit(["b"]))
        bad = self.results(self.group.commit(["bad"]))
        self.db.end(0)
        self.clock.advance(0.004)
        self.db.end(1, ValueError("constraint"))
        self.assertEqual([ops for ops, _ in self.db.transactions[2:]], [["b"], ["bad"]])
        self.db.end(2)
        self.db.end(3, ValueError("constraint"))
        self.assertEqual(good, [None])
        self.assertTrue(bad[0].check(ValueError))
        after = self.results(self.group.commit(["c"]))
        self.clock.advance(0.004)
        self.assertEqual(self.db.transactions[-1][0], ["c"])
        self.db.end()
        self.assertEqual(after, [None])
