"""
/p2pvideo end to end: real client processes send a real file of several MiB
straight to each other over UDP, checked byte for byte, also through loss.
"""

import hashlib
import os
import re
import signal

from twisted.trial.unittest import SynchronousTestCase

from .harness import E2EMixin

TS = r"\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}"


def write_random_file(path, size):
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class P2PVideoTests(E2EMixin, SynchronousTestCase):
    def setUp(self):
        self.start_server()

    def transfer(self, size, presenter_env=None, timeout=60):
        yoda = self.login("Yoda", "wise@!man", env=presenter_env)
        hans = self.login("Hans", "falcon*solo")
        digest = write_random_file(os.path.join(yoda.cwd, "clip.mp4"), size)
        yoda.command("/p2pvideo Hans clip.mp4")
        # Both keep chatting while the file travels.
        hans.send("/msgto Yoda still here")
        hans.stdout.expect_each(re.compile("^message sent at"),
                                "A file (clip.mp4) has been received from Yoda", timeout=timeout)
        yoda.stdout.expect_each(re.compile(rf"^{TS}, Hans: still here$"), "clip.mp4 has been uploaded",
                                timeout=timeout)
        received = os.path.join(hans.cwd, "Yoda_clip.mp4")
        self.assertEqual(sha256_of(received), digest)
        self.assertEqual(sorted(os.listdir(hans.cwd)), ["Yoda_clip.mp4"])  # no temporary file left
        return yoda, hans

    def test_several_mib_byte_for_byte(self):
        self.transfer(6 * 1024 * 1024 + 123)

    def test_lossy_network_still_delivers_intact(self):
        self.transfer(3 * 1024 * 1024, presenter_env={"CHATPROTO_TEST_UDP_LOSS": "0.1"})

    def test_replaces_older_file_and_sends_both_ways(self):
        yoda, hans = self.transfer(200_000)
        write_random_file(os.path.join(hans.cwd, "reply.mp4"), 300_000)
        hans.command("/p2pvideo Yoda reply.mp4")
        hans.expect("reply.mp4 has been uploaded")
        yoda.expect("A file (reply.mp4) has been received from Hans")
        self.assertEqual(sha256_of(os.path.join(yoda.cwd, "Hans_reply.mp4")),
                         sha256_of(os.path.join(hans.cwd, "reply.mp4")))
        digest = write_random_file(os.path.join(yoda.cwd, "clip.mp4"), 100_000)
        yoda.command("/p2pvideo Hans clip.mp4")
        yoda.expect("clip.mp4 has been uploaded")
        hans.expect("A file (clip.mp4) has been received from Yoda")
        self.assertEqual(sha256_of(os.path.join(hans.cwd, "Yoda_clip.mp4")), digest)

    def test_receiver_gone_gives_up_with_a_message(self):
        yoda = self.login("Yoda", "wise@!man", args=["--p2p-timeout", "2"])
        hans = self.login("Hans", "falcon*solo")
        write_random_file(os.path.join(yoda.cwd, "clip.mp4"), 1_000_000)
        # Hans's client freezes: still logged in, its UDP port silent.
        os.kill(hans.process.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, hans.process.pid, signal.SIGCONT)
        yoda.command("/p2pvideo Hans clip.mp4")
        yoda.expect(re.compile(r"^Sending clip\.mp4 to Hans failed: .+"), timeout=30)
        yoda.command("/activeuser", re.compile("^Hans, "))  # and Yoda's client goes on
