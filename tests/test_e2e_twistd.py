"""The twistd plugin, from a regular (non-editable) install."""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from .harness import DEMO_CREDENTIALS, ClientProcess, OutputReader, child_env, free_udp_port


def plugin_installed() -> bool:
    return importlib.util.find_spec("twisted.plugins.chatproto_plugin") is not None


class TwistdPluginTests(SynchronousTestCase):
    def setUp(self):
        if not plugin_installed():
            self.skipTest("the chat plugin is installed by a regular `pip install .`")
        self.dir = tempfile.mkdtemp(prefix="chatproto-twistd-")

    def twistd(self, *args, **kwargs):
        return subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *args],
            cwd=self.dir, env=child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs,
        )

    def test_help_lists_chat(self):
        process = self.twistd("--help")
        out, _ = process.communicate(timeout=30)
        self.assertRegex(out.decode(), r"(?m)^\s+chat\s+chatproto")

    def test_serves_clients(self):
        process = self.twistd(
            "-n", "--pidfile=", "chat", "--listen", "tcp:0:interface=127.0.0.1", "--attempts", "2",
            "--credentials", DEMO_CREDENTIALS, "--data-dir", self.dir,
        )
        output = OutputReader(process.stdout, "twistd")
        try:
            match = output.expect(re.compile(r"Server listening on 127\.0\.0\.1:(\d+)"), timeout=30)
            client = ClientProcess("127.0.0.1", int(match.group(1)), free_udp_port())
            self.addCleanup(client.cleanup)
            client.login("Yoda", "wise@!man")
            client.command("/activeuser", "no other active user")
            with open(os.path.join(self.dir, "userlog.txt")) as f:
                self.assertIn("; Yoda; 127.0.0.1; ", f.read())
            process.send_signal(signal.SIGTERM)
            client.expect("Server shutting down")
            self.assertEqual(client.wait(), 1)
            # twistd ends with the signal that stopped it, after a clean shutdown.
            self.assertIn(process.wait(30), (0, -signal.SIGTERM))
            self.assertIn("Main loop terminated.", "\n".join(output.rest(5)))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()

    def test_tls_endpoint(self):
        import socket
        import ssl

        key, cert = self.self_signed_certificate()
        process = self.twistd(
            "-n", "--pidfile=", "chat", "--listen", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
            "--credentials", DEMO_CREDENTIALS, "--data-dir", self.dir,
        )
        output = OutputReader(process.stdout, "twistd")
        try:
            match = output.expect(re.compile(r"Server listening on 127\.0\.0\.1:(\d+)"), timeout=30)
            context = ssl.create_default_context(cafile=cert)
            context.check_hostname = False
            with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=10) as raw:
                with context.wrap_socket(raw) as tls:
                    f = tls.makefile("rwb")
                    f.write(b"LOGIN Yoda wise@!man 6000\n/activeuser\n")
                    f.flush()
                    self.assertEqual(f.readline(), b"OK Welcome to chatproto!\n")
                    self.assertEqual(f.readline(), b"OK no other active user\n")
        finally:
            process.kill()
            process.wait()
            process.stdout.close()

    def self_signed_certificate(self):
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        key_path = os.path.join(self.dir, "key.pem")
        cert_path = os.path.join(self.dir, "cert.pem")
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        return key_path, cert_path

    def test_bad_attempts(self):
        process = self.twistd("-n", "chat", "--attempts", "9", "--credentials", DEMO_CREDENTIALS)
        out, _ = process.communicate(timeout=30)
        self.assertNotEqual(process.returncode, 0)
        self.assertIn("Invalid number of allowed failed consecutive attempts: 9.", out.decode())
