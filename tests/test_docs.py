"""
The repository's docs stand alone: a clone has no SPEC.md nor ../shared, so no
tracked doc, and no comment or docstring in a tracked Python file, may send a
reader there; and README's commands are the ones that work.
"""

import os
import re
import shlex
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from .harness import REPO

DOC_SUFFIXES = (".md", ".toml", ".txt", ".service", ".html")
ELSEWHERE = re.compile(r"\bSPEC\b|SPEC\.md|\.\./shared|/work/shared")
# In code, "the spec" means that file too (importlib's find_spec and "the CAP spec" do not match).
ELSEWHERE_IN_CODE = re.compile(ELSEWHERE.pattern + r"|\b[Tt]he spec\b")
THIS_FILE = "tests/test_docs.py"  # it names what it looks for


def tracked_files() -> list[str]:
    """The files git tracks (every file below the repository when it is not a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True,
                                timeout=30).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        listed = [os.path.relpath(os.path.join(d, f), REPO) for d, _, files in os.walk(REPO)
                  if ".venv" not in d and ".git" not in d for f in files]
    return sorted(p for p in listed if p)


def tracked_docs() -> list[str]:
    return [p for p in tracked_files() if p.endswith(DOC_SUFFIXES) and not p.startswith("tests/")]


def tracked_code() -> list[str]:
    """The Python files git tracks: the package, the tests, the benchmarks, the plugin."""
    return [p for p in tracked_files() if p.endswith(".py") and p != THIS_FILE]


def lines_matching(paths, pattern) -> list[str]:
    found = []
    for path in paths:
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if pattern.search(line):
                    found.append(f"{path}:{number}: {line.strip()}")
    return found


class StandAloneDocsTests(SynchronousTestCase):
    def test_no_doc_refers_to_a_file_a_clone_does_not_have(self):
        docs = tracked_docs()
        self.assertIn("README.md", docs)
        self.assertIn("docs/PROTOCOL.md", docs)
        self.assertEqual(lines_matching(docs, ELSEWHERE), [], "say it in the repository's own docs instead")

    def test_no_comment_refers_to_a_file_a_clone_does_not_have(self):
        code = tracked_code()
        self.assertIn("chatproto/core/realm.py", code)
        self.assertIn("tests/test_web.py", code)
        self.assertEqual(lines_matching(code, ELSEWHERE_IN_CODE), [],
                         "name the repository's doc (docs/PROTOCOL.md, /msgto) or say the rule itself")


class ReadmeCommandsTests(SynchronousTestCase):
    """README's commands run from a clone with its .venv: no bare `python -m` that needs an activated venv."""

    def setUp(self):
        with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
            self.readme = f.read()
        self.blocks = re.findall(r"```sh\n(.*?)```", self.readme, re.S)

    def test_every_command_names_the_venv(self):
        for block in self.blocks:
            for line in block.splitlines():
                command = line.split("#", 1)[0].strip()
                for part in re.split(r"&&|;|\|\|", command):
                    words = part.strip(" ()").split()
                    if words and words[0] in ("python", "python3", "pip", "twistd", "chatproto-admin",
                                              "chatproto-server", "chatproto-client", "pytest"):
                        self.assertEqual(words[:3], ["python3", "-m", "venv"], line)

    def test_the_demo_data_is_ignored_and_the_tracked_accounts_are_a_template(self):
        first = self.blocks[0]
        self.assertIn("cd demo && ../.venv/bin/python -m chatproto.server", first)
        self.assertIn("cp credentials.txt demo/", first)
        with open(os.path.join(REPO, ".gitignore"), encoding="utf-8") as f:
            self.assertIn("/demo/", f.read().split())


class FollowingTheReadmeTests(SynchronousTestCase):
    """
    README's first command, run as written (but for this interpreter and
    free ports) in a repository of its own: after a login, a password
    change, an account added with chatproto-admin and a stop, git sees
    nothing new and the tracked demo accounts are unchanged.
    """

    def git(self, *args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                              cwd=self.clone, capture_output=True, text=True, check=True, timeout=60).stdout

    def test_git_status_stays_clean(self):
        import shutil
        import sys
        import tempfile

        from .harness import ClientProcess, OutputReader, child_env, free_udp_port

        if shutil.which("git") is None:
            raise self.skipTest("git is not installed")
        self.clone = tempfile.mkdtemp(prefix="chatproto-readme-")
        self.addCleanup(shutil.rmtree, self.clone, True)
        for name in (".gitignore", "credentials.txt", "README.md"):
            shutil.copy(os.path.join(REPO, name), self.clone)
        self.git("init", "-q")
        self.git("add", ".")
        self.git("commit", "-q", "-m", "a clone")
        with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
            first = re.search(r"```sh\n(.*?)\n```", f.read(), re.S).group(1)
        setup, _, start = first.partition(" && mkdir")
        self.assertEqual(setup, "python3 -m venv .venv && .venv/bin/pip install -q .")  # done: this venv
        # exec: the server is the shell's process, and its exit status the one seen here.
        command = ("mkdir" + start).replace("&& ../.venv/bin/python", "&& exec " + shlex.quote(sys.executable))
        command = command.replace("--irc-port 6667 --web-port 8080 9000 3", "--irc-port 0 --web-port 0 0 3")
        server = subprocess.Popen(["sh", "-c", command], cwd=self.clone,
                                  env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        out = OutputReader(server.stdout, "server")

        def stop():
            if server.poll() is None:
                server.terminate()
            server.wait(30)
            server.stdout.close()

        self.addCleanup(stop)
        port = int(out.expect(re.compile(r"^Server listening on [\d.]+:(\d+)$")).group(1))
        demo = os.path.join(self.clone, "demo")
        yoda = ClientProcess("127.0.0.1", port, free_udp_port(), cwd=demo)
        self.addCleanup(yoda.cleanup)  # (it removes its directory too: after the checks)
        yoda.login("Yoda", "wise@!man")
        yoda.command("/changepassword wise@!man dagobah", "Your password has been changed.")
        yoda.send("/logout")
        yoda.expect("Bye, Yoda!")
        self.assertEqual(yoda.wait(), 0)
        added = subprocess.run([sys.executable, "-m", "chatproto.server.admin", "adduser", "rey"],
                               cwd=demo, input="jakku\njakku\n", capture_output=True, text=True,
                               env=child_env(), timeout=60)
        self.assertEqual(added.stdout, "Added rey.\n", added.stderr)
        out.expect(re.compile(r"Accounts reloaded: 7 accounts, added rey"))
        stop()
        self.assertEqual(server.returncode, 0, out.lines)
        self.assertTrue(os.path.exists(os.path.join(demo, "chatproto.db")))
        self.assertEqual(self.git("status", "--porcelain", "--untracked-files=all"), "")
        self.assertEqual(self.git("diff", "--stat"), "")
