"""The server tunes the garbage collector for serving once it has started."""

import gc

from twisted.trial.unittest import SynchronousTestCase

from chatproto.server.collector import SERVING_THRESHOLDS, CollectorTuning


class CollectorTuningTests(SynchronousTestCase):
    def setUp(self):
        thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *thresholds)
        self.addCleanup(gc.unfreeze)

    def test_start_raises_thresholds_and_freezes_what_exists(self):
        survivor = [object()]  # a container tracked by the collector, made before the start
        CollectorTuning().startService()
        self.assertEqual(gc.get_threshold(), SERVING_THRESHOLDS)
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertTrue(gc.is_tracked(survivor))
