"""The packaging ships every package of the source tree (twistd and the console scripts need a regular install)."""

import configparser
import os

from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PackagingTests(SynchronousTestCase):
    def test_every_package_is_listed_in_setup_cfg(self):
        config = configparser.ConfigParser()
        config.read(os.path.join(REPO, "setup.cfg"))
        listed = set(config["options"]["packages"].split())
        found = set()
        for directory, _dirs, files in os.walk(os.path.join(REPO, "chatproto")):
            if "__init__.py" in files:
                found.add(os.path.relpath(directory, REPO).replace(os.sep, "."))
        self.assertEqual(sorted(found - listed), [])
