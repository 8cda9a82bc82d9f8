"""
docs/PROTOCOL.md's Extensions without sockets: /leavegroup, /changepassword,
/deletemsg, /deletegroupmsg, /createbroadcast, /help, over StringTransport
with time on a task.Clock; and the files they rewrite.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from chatproto import client as client_module
from chatproto.core.passwords import password_matches
from chatproto.storage.credentials import CredentialsFile, parse_credentials
from chatproto.storage.textlogs import RecordLog
from chatproto.core.passwords import Passwords, hash_password
from chatproto.storage.credentials import AccountNotInFile, replace_line_secret, rewrite_credentials
from chatproto.frontends.line.protocol import ADMIN_COMMANDS, USAGE
from chatproto.storage.records import DELETED, NoSuchRecord, NotAuthor, delete_record, find_record

from .support import DEMO, ChatFixture
from .test_domain import Journal

TS = "01 Jun 2022 " + r"\d{2}:\d{2}:\d{2}"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = "ERR Your account is blocked due to multiple login failures. Please try again later"


def fixture(testcase, **kwargs) -> ChatFixture:
    f = ChatFixture(testcase, **kwargs)
    f.chat.passwords.rounds = 4  # bcrypt's minimum: the tests are about the logic
    return f


class LeaveGroupTests(SynchronousTestCase):
    def setUp(self):
        self.f = fixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")
        self.leia = self.f.login("leia", "alderaan")
        self.yoda.send("/creategroup Jedi Hans leia")
        self.hans.send("/joingroup Jedi")
        self.leia.output()
        self.yoda.output()  # Hans's join notice

    def test_leave_notifies_the_other_joined_active_members(self):
        luke = self.f.login("luke", "jedi*knight")
        self.assertEqual(self.hans.send("/leavegroup jedi"), ["OK You have left the group chat Jedi."])
        self.assertEqual(self.yoda.output(), ["NOTICE Hans has left the group chat Jedi."])
        self.assertEqual(self.leia.output(), [])  # invited, not joined
        self.assertEqual(luke.output(), [])  # no member
        # Gone from the group: no more messages, cannot send.
        self.yoda.send("/groupmsg Jedi hello")
        self.assertEqual(self.hans.output(), [])
        self.assertEqual(self.hans.send("/groupmsg Jedi back"), ["ERR You are not in this group chat."])
        self.assertEqual(self.hans.send("/joingroup Jedi"),
                         ["ERR You are not a member of the group chat Jedi."])

    def test_invited_member_may_decline(self):
        self.assertEqual(self.leia.send("/leavegroup Jedi"), ["OK You have left the group chat Jedi."])
        self.assertEqual(self.yoda.output(), [])
        self.assertEqual(self.hans.output(), [])
        self.assertEqual(self.leia.send("/joingroup Jedi"),
                         ["ERR You are not a member of the group chat Jedi."])

    def test_errors_and_usage(self):
        luke = self.f.login("luke", "jedi*knight")
        self.assertEqual(luke.send("/leavegroup Sith"), ["ERR The group chat does not exist."])
        self.assertEqual(luke.send("/leavegroup Jedi"), ["ERR You are not in this group chat."])
        self.assertEqual(luke.send("/leavegroup"), ["ERR Usage: /leavegroup GROUPNAME"])
        self.assertEqual(luke.send("/leavegroup Jedi Sith"), ["ERR Usage: /leavegroup GROUPNAME"])
        self.assertEqual(self.yoda.output() + self.hans.output(), [])

    def test_empty_group_removed_log_kept_numbering_continues(self):
        self.yoda.send("/groupmsg Jedi one")
        self.hans.send("/groupmsg Jedi two")
        for c in (self.yoda, self.hans, self.leia):
            c.output()
            self.assertEqual(c.send("/leavegroup Jedi"), ["OK You have left the group chat Jedi."])
        self.assertEqual(self.yoda.send("/joingroup Jedi"),
                         ["ERR Groupchat (Name: Jedi) does not exist."])
        self.assertEqual(self.yoda.send("/leavegroup Jedi"), ["ERR The group chat does not exist."])
        self.assertRegex(self.f.read("Jedi_messageLog.txt"),
                         rf"^1; {TS}; Yoda; one\n2; {TS}; Hans; two\n$")
        self.assertEqual(
            self.yoda.send("/creategroup Jedi Hans"),
            ["OK Group chat room has been created, room name: Jedi, users in this room: Yoda Hans"])
        self.yoda.send("/groupmsg Jedi three")
        self.assertRegex(self.f.read("Jedi_messageLog.txt").splitlines()[-1], rf"^3; {TS}; Yoda; three$")

    def test_group_kept_while_an_invited_member_remains(self):
        self.hans.send("/leavegroup Jedi")
        self.yoda.send("/leavegroup Jedi")
        self.assertEqual(self.leia.send("/joingroup Jedi"), ["OK Joined the group chat: Jedi successfully."])


class BroadcastTests(SynchronousTestCase):
    def setUp(self):
        self.f = fixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")
        self.leia = self.f.login("leia", "alderaan")

    def test_only_the_owner_sends(self):
        self.assertEqual(
            self.yoda.send("/createbroadcast News Hans leia Yoda Hans"),
            ["OK Broadcast group has been created, room name: News, users in this room: Yoda Hans leia"])
        invitation = ("NOTICE You have been invited to the group chat News by Yoda. "
                      "Type /joingroup News to join.")
        self.assertEqual(self.hans.output(), [invitation])
        self.assertEqual(self.leia.output(), [invitation])
        self.hans.send("/joingroup News")
        self.yoda.output()  # Hans's join notice
        self.assertEqual(self.hans.send("/groupmsg News hi"),
                         ["ERR Only the owner can send messages to this broadcast group."])
        self.assertEqual(self.leia.send("/groupmsg News hi"),
                         ["ERR Please join the group before sending messages."])
        self.assertEqual(self.yoda.send("/groupmsg News hear ye"), ["OK Group chat message sent."])
        [line] = self.hans.output()
        self.assertRegex(line, rf"^MSG {TS}, News, Yoda: hear ye$")
        self.assertRegex(self.f.read("News_messageLog.txt"), rf"^1; {TS}; Yoda; hear ye\n$")

    def test_same_checks_as_creategroup(self):
        usage = ["ERR Usage: /createbroadcast GROUPNAME USERNAME [USERNAME ...]"]
        self.assertEqual(self.yoda.send("/createbroadcast"), usage)
        self.assertEqual(self.yoda.send("/createbroadcast News"), usage)
        self.assertEqual(self.yoda.send("/createbroadcast Bad-name Hans"),
                         ["ERR Group name must be 1-32 letters and digits"])
        self.yoda.send("/creategroup Jedi Hans")
        self.assertEqual(self.yoda.send("/createbroadcast JEDI Hans"),
                         ["ERR A group chat (Name: JEDI) already exists"])
        self.assertEqual(self.yoda.send("/createbroadcast News Nobody"), ["ERR No such user: Nobody"])
        self.assertEqual(self.yoda.send("/createbroadcast News luke"), ["ERR luke is not active"])
        self.assertEqual(self.yoda.send("/createbroadcast News Yoda"),
                         ["ERR Please enter at least one more active user."])
        self.assertEqual(self.f.chat.group_info("News"), None)


class HelpTests(SynchronousTestCase):
    def test_every_command_with_its_form(self):
        f = fixture(self)
        yoda = f.login("Yoda", "wise@!man")
        lines = yoda.send("/help")
        self.assertEqual(lines[-1], "OK")
        forms = [line.removeprefix("DATA ") for line in lines[:-1]]
        self.assertEqual(forms, [
            "/msgto USERNAME MESSAGE",
            "/activeuser",
            "/creategroup GROUPNAME USERNAME [USERNAME ...]",
            "/joingroup GROUPNAME",
            "/groupmsg GROUPNAME MESSAGE",
            "/p2pvideo USERNAME FILENAME",
            "/leavegroup GROUPNAME",
            "/changepassword CURRENT NEW",
            "/deletemsg SEQ",
            "/deletegroupmsg GROUPNAME SEQ",
            "/createbroadcast GROUPNAME USERNAME [USERNAME ...]",
            "/history USERNAME [N]",
            "/grouphistory GROUPNAME [N]",
            "/search [in NAME] TEXT",
            "/groups",
            "/members GROUPNAME",
            "/users",
            "/help",
            "/sessions",
            "/away [MESSAGE]",
            "/read NAME SEQ",
            "/unread",
            "/logout [all]",
        ])
        # Every command handler is listed (the administrators' only to administrators).
        handlers = sorted(name[4:] for name in dir(yoda.protocol)
                          if name.startswith("cmd_") and name[4:] not in ADMIN_COMMANDS)
        self.assertEqual(sorted(form.split()[0][1:] for form in forms), handlers)
        self.assertEqual(yoda.send("/help me"), ["ERR Usage: /help"])

    def test_before_login(self):
        f = fixture(self)
        self.assertEqual(f.connect().send("/help"), ["ERR Please log in first"])


CREDENTIALS = (
    "Hans falcon*solo\r\n"  # CRLF kept
    "\n"
    "bad line here\n"  # malformed: kept as is
    "Yoda wise@!man\n"
    "  \n"
    "caf\xe9 cr\xe8me\n"  # non-ASCII
    "Yoda duplicate\n"  # a later duplicate: skipped by the loader, kept as is
    "\udcff\udcfe junk\n"  # bytes that are no UTF-8
    "leia alderaan"  # no final newline
)


class CredentialsRewriteTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.path = os.path.join(self.dir, "credentials.txt")
        with open(self.path, "wb") as f:
            f.write(CREDENTIALS.encode("utf-8", "surrogateescape"))

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def test_only_the_accounts_line_changes(self):
        before = self.read()
        rewrite_credentials(self.path, "Yoda", "$2b$04$" + "x" * 53)
        after = self.read()
        self.assertEqual(after, before.replace(b"Yoda wise@!man\n", b"Yoda $2b$04$" + b"x" * 53 + b"\n"))
        rewrite_credentials(self.path, "leia", "NEW")
        self.assertEqual(self.read(), after.replace(b"leia alderaan", b"leia NEW"))
        rewrite_credentials(self.path, "Hans", "h")
        self.assertTrue(self.read().startswith(b"Hans h\r\n\nbad line here\n"))
        rewrite_credentials(self.path, "caf\xe9", "c")
        self.assertIn("caf\xe9 c\n".encode(), self.read())
        self.assertEqual(os.listdir(self.dir), ["credentials.txt"])  # no temporary file left

    def test_same_line_as_the_loader(self):
        # Lines are split as the loader splits them (every line break
        # splitlines knows), and the first well-formed line of the account counts.
        data = b"Yoda\x0cwise x\nYoda one two\nYoda real\nYoda again\n"
        self.assertEqual(parse_credentials("c", data.decode())[0]["Yoda"], "real")
        self.assertEqual(replace_line_secret("c", data, "Yoda", "S"),
                         b"Yoda\x0cwise x\nYoda one two\nYoda S\nYoda again\n")
        self.assertRaises(AccountNotInFile, replace_line_secret, "c", data, "Hans", "S")

    def test_mode_and_symlink_kept(self):
        os.chmod(self.path, 0o600)
        link = os.path.join(self.dir, "link.txt")
        os.symlink(self.path, link)
        rewrite_credentials(link, "Yoda", "S")
        self.assertTrue(os.path.islink(link))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertIn(b"\nYoda S\n", self.read())

    def test_kill_9_during_rewrites_leaves_a_whole_file(self):
        """
        A process rewrites the file in a loop (a large file, so each write
        takes a while); it is killed at different moments. Each time the
        file is either the old or the new version, never truncated or mixed.
        """
        filler = "".join(f"user{i} password{i}\n" for i in range(20000))  # about 0.5 MB
        with open(self.path, "w") as f:
            f.write(filler + "Yoda wise@!man\n" + filler.replace("user", "other"))
        with open(self.path, "rb") as f:
            original = f.read()
        versions = {original.replace(b"Yoda wise@!man", b"Yoda " + s) for s in (b"A" * 60, b"B" * 60)}
        versions.add(original)
        script = textwrap.dedent("""
            import sys
            from chatproto.storage.credentials import rewrite_credentials
            i = 0
            while True:
                rewrite_credentials(sys.argv[1], "Yoda", ("A" if i % 2 else "B") * 60)
                i += 1
                print(i, flush=True)
        """)
        env = dict(os.environ, PYTHONPATH=REPO)
        for rewrites in (1, 2, 4):
            child = subprocess.Popen([sys.executable, "-c", script, self.path], env=env,
                                     stdout=subprocess.PIPE)
            for _ in range(rewrites):
                self.assertTrue(child.stdout.readline())
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
            self.assertIn(self.read(), versions)
            secrets, problems = parse_credentials(self.path, self.read().decode())
            self.assertEqual(problems, [])
            self.assertEqual(len(secrets), 40001)
        # A temporary file may be left by a kill; the credentials file never.
        for name in os.listdir(self.dir):
            self.assertTrue(name == "credentials.txt" or re.fullmatch(r"\.credentials\.txt\..*\.tmp", name))


class ChangePasswordTests(SynchronousTestCase):
    def setUp(self):
        self.f = fixture(self, attempts=3, credentials=DEMO.replace("vader sithlord**\n", "bad\n"))
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.path = self.f.accounts.path

    def raw(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def test_success(self):
        before = self.raw()
        self.assertEqual(self.yoda.send("/changepassword wise@!man new\xe9pass"),
                         ["OK Your password has been changed."])
        after = self.raw().decode().splitlines(keepends=True)
        old = before.decode().splitlines(keepends=True)
        [changed] = [i for i, (a, b) in enumerate(zip(old, after, strict=True)) if a != b]
        self.assertEqual(old[changed], "Yoda wise@!man\n")
        username, secret = after[changed].rstrip("\n").split(" ")
        self.assertEqual(username, "Yoda")
        self.assertRegex(secret, r"^\$2b\$04\$[./A-Za-z0-9]{53}$")
        self.assertTrue(password_matches(secret, "new\xe9pass"))
        # The next login needs the new password; a fresh load sees it too.
        self.yoda.send("/logout")
        c = self.f.connect()
        self.assertEqual(c.send("LOGIN Yoda wise@!man 6000"), ["ERR Invalid Password. Please try again"])
        self.assertEqual(c.send("LOGIN Yoda new\xe9pass 6000"), ["OK Welcome to chatproto!"])
        self.assertEqual(CredentialsFile(self.path).load().secrets["Yoda"], secret)
        # And it can be changed again, from the hashed secret.
        self.assertEqual(c.send("/changepassword new\xe9pass third"), ["OK Your password has been changed."])
        self.assertNotEqual(CredentialsFile(self.path).load().secrets["Yoda"], secret)

    def test_plain_text_passwords_keep_working(self):
        self.yoda.send("/changepassword wise@!man other")
        self.assertEqual(self.f.login("Hans", "falcon*solo").output(), [])

    def test_errors_change_nothing(self):
        before = self.raw()
        usage = ["ERR Usage: /changepassword CURRENT NEW"]
        self.assertEqual(self.yoda.send("/changepassword"), usage)
        self.assertEqual(self.yoda.send("/changepassword wise@!man"), usage)
        whitespace = ["ERR A password cannot contain whitespace."]
        self.assertEqual(self.yoda.send("/changepassword wise@!man new pass"), whitespace)
        self.assertEqual(self.yoda.send("/changepassword wise@!man new\u00a0pass"), whitespace)
        self.assertEqual(self.yoda.send("/changepassword wise@!man " + "x" * 73),
                         ["ERR A password cannot be longer than 72 bytes."])
        self.assertEqual(self.yoda.send("/changepassword wrong new"),
                         ["ERR Current password is incorrect."])
        self.assertEqual(self.raw(), before)

    def test_wrong_current_password_counts_toward_the_lockout(self):
        wrong = ["ERR Current password is incorrect."]
        self.assertEqual(self.yoda.send("/changepassword x new"), wrong)
        c = self.f.connect()
        self.assertEqual(c.send("LOGIN Yoda y 6000"), ["ERR Invalid Password. Please try again"])
        self.assertEqual(self.yoda.send("/changepassword z new"), wrong)  # the third failure
        self.assertEqual(c.send("LOGIN Yoda wise@!man 6000"), [BLOCKED])
        # While blocked the password cannot be changed, even with the right one.
        self.assertEqual(self.yoda.send("/changepassword wise@!man new"), [BLOCKED])
        self.f.clock.advance(10)
        self.assertEqual(self.yoda.send("/changepassword wise@!man new"),
                         ["OK Your password has been changed."])

    def test_success_resets_the_failures(self):
        self.yoda.send("/changepassword x new")
        self.yoda.send("/changepassword y new")
        self.yoda.send("/changepassword wise@!man new")
        self.yoda.send("/changepassword x new2")
        self.yoda.send("/changepassword y new2")
        self.assertEqual(self.yoda.send("/changepassword new new2"), ["OK Your password has been changed."])

    def test_account_removed_from_the_file_meanwhile(self):
        with open(self.path, "w") as f:
            f.write("Hans falcon*solo\n")
        self.assertEqual(self.yoda.send("/changepassword wise@!man new"), [
            "ERR Your account is no longer in the credentials file; the password was not changed."])
        self.assertEqual(self.raw(), b"Hans falcon*solo\n")

    def test_slow_hashing_keeps_replies_in_order(self):
        """
        With hashing in a thread the reply comes later; lines that arrive
        meanwhile wait for it.
        """
        pending = []

        def run(f, *args):
            d = defer.Deferred()
            pending.append((d, f, args))
            return d

        self.f.chat.passwords.run = run
        self.assertEqual(self.yoda.send("/changepassword wise@!man new\n/help"), [])
        while pending:
            d, f, args = pending.pop(0)
            d.callback(f(*args))
        self.f.clock.advance(0)  # replies go out at the end of the turn
        lines = self.yoda.output()
        self.assertEqual(lines[0], "OK Your password has been changed.")
        self.assertEqual(lines[1], "DATA /msgto USERNAME MESSAGE")
        self.assertEqual(lines[-1], "OK")
        # Logins with a hashed secret wait for the check the same way.
        c = self.f.connect()
        self.assertEqual(c.send("LOGIN Hans falcon*solo 6000"), ["OK Welcome to chatproto!"])  # plain text
        self.yoda.send("/logout")
        c = self.f.connect()
        self.assertEqual(c.send("LOGIN Yoda new 6001\n/help"), [])
        d, f, args = pending.pop(0)
        d.callback(f(*args))
        self.f.clock.advance(0)  # the userlog line is written before the OK
        self.assertEqual(c.output()[:2], ["OK Welcome to chatproto!", "DATA /msgto USERNAME MESSAGE"])

    def test_block_during_a_slow_check(self):
        """
        Two checks of a hashed password run at once (a login and a change);
        the login's failure blocks the account: the change's failure must not
        count again (nor start a second block timer).
        """
        self.yoda.send("/changepassword wise@!man hashed")  # now a bcrypt hash
        pending = []

        def run(f, *args):
            d = defer.Deferred()
            pending.append((d, f, args))
            return d

        self.f.chat.passwords.run = run
        self.yoda.protocol.dataReceived(b"/changepassword wrong1 new\n")
        logins = [self.f.connect() for _ in range(3)]
        for c in logins:
            c.protocol.dataReceived(b"LOGIN Yoda wrong 6000\n")
        while len(pending) > 1:  # the logins' checks, one at a time
            d, f, args = pending.pop(1)
            d.callback(f(*args))
        self.f.clock.advance(0)
        self.assertEqual([c.output() for c in logins], [
            ["ERR Invalid Password. Please try again"], ["ERR Invalid Password. Please try again"],
            ["ERR Invalid Password. Your account has been blocked. Please try again later"]])
        d, f, args = pending[0]
        d.callback(f(*args))
        self.f.clock.advance(0)  # the reply goes out at the end of the turn
        self.assertEqual(self.yoda.output(), [BLOCKED])
        self.assertEqual(len(self.f.timers()), 1)
        self.f.clock.advance(10)
        self.assertEqual(self.f.timers(), [])

    def test_hashing_failure_is_a_server_error(self):
        self.f.chat.passwords.run = lambda f, *args: defer.fail(RuntimeError("boom"))
        self.assertEqual(self.yoda.send("/changepassword wise@!man new"), ["ERR Server error"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class PasswordsTests(SynchronousTestCase):
    def test_hash_is_bcrypt_and_salted(self):
        a, b = hash_password("pw", rounds=4), hash_password("pw", rounds=4)
        self.assertNotEqual(a, b)
        self.assertTrue(a.startswith("$2b$04$"))
        self.assertTrue(password_matches(a, "pw"))
        self.assertFalse(password_matches(a, "pW"))

    def test_synchronous_on_a_clock(self):
        passwords = Passwords(task.Clock(), rounds=4)
        secret = self.successResultOf(passwords.hash("pw"))
        self.assertTrue(self.successResultOf(passwords.verify(secret, "pw")))
        self.assertFalse(self.successResultOf(passwords.verify(secret, "no")))
        self.assertTrue(self.successResultOf(passwords.verify("plain", "plain")))


class DeleteMessageTests(SynchronousTestCase):
    def setUp(self):
        self.f = fixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")

    def test_delete_own_private_message(self):
        self.yoda.send("/msgto Hans one; two")
        self.hans.send("/msgto Yoda reply")
        self.yoda.send("/msgto Hans three")
        self.hans.output()
        before = self.f.read("messagelog.txt").splitlines(keepends=True)
        self.assertEqual(self.yoda.send("/deletemsg 1"), ["OK Message 1 deleted."])
        after = self.f.read("messagelog.txt").splitlines(keepends=True)
        self.assertEqual(after[0], before[0].replace("; one; two\n", "; [deleted]\n"))
        self.assertRegex(after[0], rf"^1; {TS}; Yoda; \[deleted\]\n$")
        self.assertEqual(after[1:], before[1:])
        self.assertEqual(self.hans.output(), [])  # no notice for private messages
        # Deleting again is fine; the numbering goes on, into the new file.
        self.assertEqual(self.yoda.send("/deletemsg 1"), ["OK Message 1 deleted."])
        self.assertEqual(self.yoda.send("/deletemsg 003"), ["OK Message 3 deleted."])
        self.yoda.send("/msgto Hans four")
        self.assertRegex(self.f.read("messagelog.txt"),
                         rf"^1; {TS}; Yoda; \[deleted\]\n2; {TS}; Hans; reply\n"
                         rf"3; {TS}; Yoda; \[deleted\]\n4; {TS}; Yoda; four\n$")
        self.assertEqual(sorted(os.listdir(self.f.dir)),
                         ["credentials.txt", "messagelog.txt", "userlog.txt"])

    def test_errors_change_nothing(self):
        self.yoda.send("/msgto Hans one")
        self.hans.send("/msgto Yoda two")
        self.yoda.output()
        before = self.f.read("messagelog.txt")
        self.assertEqual(self.yoda.send("/deletemsg 2"), ["ERR You can only delete your own messages."])
        self.assertEqual(self.yoda.send("/deletemsg 3"), ["ERR No message 3."])
        self.assertEqual(self.yoda.send("/deletemsg 99999999999999999999"),
                         ["ERR No message 99999999999999999999."])
        usage = ["ERR Usage: /deletemsg SEQ"]
        for args in ("", " 0", " -1", " x", " 1 2", " \u0661", " 1.0"):
            self.assertEqual(self.yoda.send("/deletemsg" + args), usage, args)
        self.assertEqual(self.f.read("messagelog.txt"), before)

    def test_no_message_in_an_empty_log(self):
        self.assertEqual(self.yoda.send("/deletemsg 1"), ["ERR No message 1."])

    def test_record_of_the_same_turn_is_not_lost(self):
        # The message and its deletion arrive in one read: the record is
        # still waiting for the journal's batch when the log is rewritten.
        lines = self.yoda.send("/msgto Hans one\n/msgto Hans two\n/deletemsg 2\n/msgto Hans three")
        self.assertEqual(lines[2:], ["OK Message 2 deleted.", lines[3]])
        self.assertRegex(self.f.read("messagelog.txt"),
                         rf"^1; {TS}; Yoda; one\n2; {TS}; Yoda; \[deleted\]\n3; {TS}; Yoda; three\n$")

    def test_reply_waits_for_the_journal(self):
        self.hans.send("/msgto Yoda x")
        self.hans.protocol.dataReceived(b"/msgto Yoda y\n")  # waiting for the journal's batch
        self.yoda.output()
        self.yoda.protocol.dataReceived(b"/deletemsg 1\n")
        self.assertEqual(self.yoda.transport.value(), b"")  # sent at the end of the turn
        self.f.clock.advance(0)
        # Hans's second message, delivered once stored, and the reply.
        self.assertEqual(sorted(self.yoda.output()[-2:]), ["ERR You can only delete your own messages.",
                                                           "MSG 01 Jun 2022 21:30:04, Hans: y"])


class DeleteGroupMessageTests(SynchronousTestCase):
    def setUp(self):
        self.f = fixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")
        self.leia = self.f.login("leia", "alderaan")
        self.luke = self.f.login("luke", "jedi*knight")
        self.yoda.send("/creategroup Jedi Hans leia luke")
        self.hans.send("/joingroup Jedi")
        self.luke.send("/joingroup Jedi")
        self.yoda.send("/groupmsg Jedi one")
        self.hans.send("/groupmsg Jedi two")
        for c in (self.yoda, self.hans, self.leia, self.luke):
            c.output()

    def test_delete_and_notice(self):
        self.luke.drop()
        before = self.f.read("Jedi_messageLog.txt").splitlines()
        self.assertEqual(self.hans.send("/deletegroupmsg jedi 2"), ["OK Message 2 deleted."])
        self.assertEqual(self.yoda.output(), ["NOTICE Hans deleted message 2 in Jedi."])
        self.assertEqual(self.leia.output(), [])  # invited, not joined
        after = self.f.read("Jedi_messageLog.txt").splitlines()
        self.assertEqual(after, [before[0], before[1].replace("; two", "; [deleted]")])
        self.assertEqual(self.f.read("messagelog.txt"), "")
        # Deleting again: fine, no second notice.
        self.assertEqual(self.hans.send("/deletegroupmsg Jedi 2"), ["OK Message 2 deleted."])
        self.assertEqual(self.yoda.output(), [])

    def test_author_who_left_may_still_delete(self):
        self.hans.send("/leavegroup Jedi")
        self.yoda.output()
        self.assertEqual(self.hans.send("/deletegroupmsg Jedi 2"), ["OK Message 2 deleted."])
        self.assertEqual(self.yoda.output(), ["NOTICE Hans deleted message 2 in Jedi."])

    def test_errors(self):
        before = self.f.read("Jedi_messageLog.txt")
        self.assertEqual(self.yoda.send("/deletegroupmsg Jedi 2"),
                         ["ERR You can only delete your own messages."])
        self.assertEqual(self.yoda.send("/deletegroupmsg Jedi 3"), ["ERR No message 3."])
        self.assertEqual(self.yoda.send("/deletegroupmsg Sith 1"), ["ERR The group chat does not exist."])
        usage = ["ERR Usage: /deletegroupmsg GROUPNAME SEQ"]
        for args in ("", " Jedi", " Jedi x", " Jedi 0", " Jedi 1 2"):
            self.assertEqual(self.yoda.send("/deletegroupmsg" + args), usage, args)
        self.assertEqual(self.f.read("Jedi_messageLog.txt"), before)
        self.assertEqual(self.hans.output() + self.luke.output(), [])


class RecordFileTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.path = os.path.join(self.dir, "m.txt")
        self.clock = task.Clock()

    def test_find_record(self):
        data = b"1; t; a; x\n11; t; a; 1; y\n21; t; b; z"
        self.assertEqual(find_record(data, 1), (0, 10))
        self.assertEqual(data[slice(*find_record(data, 11))], b"11; t; a; 1; y")
        self.assertEqual(data[slice(*find_record(data, 21))], b"21; t; b; z")
        self.assertIsNone(find_record(data, 2))
        self.assertIsNone(find_record(b"", 1))

    def test_delete_record_on_a_log(self):
        log = RecordLog(self.path, Journal(self.clock))
        self.addCleanup(log.close)
        log.append("t", "a", "first")
        log.append("t", "b", "second; with; separators")
        log.append("t", "a", "third")
        self.clock.advance(0)
        self.assertRaises(NotAuthor, delete_record, log, 2, "a")
        self.assertRaises(NoSuchRecord, delete_record, log, 4, "a")
        self.assertTrue(delete_record(log, 3, "a"))
        self.assertFalse(delete_record(log, 3, "a"))
        self.assertTrue(delete_record(log, 2, "b"))
        log.append("t", "a", "fourth")
        self.clock.advance(0)
        with open(self.path) as f:
            self.assertEqual(f.read(), f"1; t; a; first\n2; t; b; {DELETED}\n3; t; a; {DELETED}\n"
                                       "4; t; a; fourth\n")

    def test_failed_rewrite_changes_nothing(self):
        import chatproto.storage.records

        log = RecordLog(self.path, Journal(self.clock))
        self.addCleanup(log.close)
        log.append("t", "a", "first")
        self.clock.advance(0)

        def full(fd):
            raise OSError(28, "No space left on device")

        self.patch(chatproto.storage.records.os, "fsync", full)
        self.assertRaises(OSError, delete_record, log, 1, "a")
        self.assertEqual(os.listdir(self.dir), ["m.txt"])  # no temporary file left
        log.append("t", "a", "second")
        self.clock.advance(0)
        with open(self.path) as f:
            self.assertEqual(f.read(), "1; t; a; first\n2; t; a; second\n")

    def test_log_continues_after_restart(self):
        log = RecordLog(self.path, Journal(self.clock))
        log.append("t", "a", "first")
        log.append("t", "a", "second")
        delete_record(log, 2, "a")
        log.close()
        log = RecordLog(self.path, Journal(self.clock))
        self.addCleanup(log.close)
        self.assertEqual(log.last_seq, 2)


class FakeConsole:
    def __init__(self):
        self.shown = []
        self.prompts = []

    def attach(self, client):
        self.client = client

    def show(self, text):
        self.shown.append(text)

    def prompt(self, text, secret=False):
        self.prompts.append((text, secret))

    def progress(self, key, text):
        pass

    def close(self):
        pass


class FakeServer:
    def __init__(self):
        self.sent = []
        self.transport = self

    def loseConnection(self):
        pass

    def send(self, text):
        self.sent.append(text)


class ClientTests(SynchronousTestCase):
    def setUp(self):
        self.console = FakeConsole()
        self.exits = []
        self.client = client_module.ChatClient(self.console, 6000, self.exits.append)
        self.server = FakeServer()
        self.client.connected(self.server)
        self.client.line_entered("Yoda")
        self.client.line_entered("wise@!man")
        self.client.server_line("OK", "Welcome to chatproto!")
        self.server.sent.clear()
        self.console.prompts.clear()

    def test_prompt_lists_the_new_commands_before_logout(self):
        self.assertEqual(
            client_module.COMMAND_PROMPT,
            "Enter one of the following commands (/msgto, /activeuser, /creategroup, /joingroup, "
            "/groupmsg, /p2pvideo, /leavegroup, /changepassword, /deletemsg, /deletegroupmsg, "
            "/createbroadcast, /history, /grouphistory, /help, /logout): ")

    def change(self, current, new, repeat):
        self.client.line_entered("/changepassword")
        self.client.line_entered(current)
        self.client.line_entered(new)
        self.client.line_entered(repeat)

    def test_changepassword_prompts_and_sends_one_line(self):
        self.change("wise@!man", "n3w", "n3w")
        self.assertEqual(self.console.prompts, [("Current password: ", True), ("New password: ", True),
                                                ("Repeat new password: ", True)])
        self.assertEqual(self.server.sent, ["/changepassword wise@!man n3w"])
        self.client.server_line("OK", "Your password has been changed.")
        self.assertEqual(self.console.shown[-1], "Your password has been changed.")
        self.assertEqual(self.console.prompts[-1], (client_module.COMMAND_PROMPT, False))

    def test_checked_on_the_client_side(self):
        for (current, new, repeat), text in [
            (("wise@!man", "a", "b"), "The new passwords do not match."),
            (("wise@!man", "a b", "a b"), "A password cannot contain whitespace."),
            (("wise@!man", "", ""), "A password cannot be empty."),
            (("", "a", "a"), "Current password is incorrect."),
        ]:
            self.console.prompts.clear()
            self.change(current, new, repeat)
            self.assertEqual(self.console.shown[-1], text)
            self.assertEqual(self.console.prompts[-1], (client_module.COMMAND_PROMPT, False))
        self.assertEqual(self.server.sent, [])

    def test_server_error_shown(self):
        self.change("bad", "n", "n")
        self.client.server_line("ERR", "Current password is incorrect.")
        self.assertEqual(self.console.shown[-1], "Current password is incorrect.")
        self.assertEqual(self.console.prompts[-1], (client_module.COMMAND_PROMPT, False))

    def test_end_of_input_at_a_password_prompt(self):
        self.client.line_entered("/changepassword")
        self.client.input_ended()
        self.assertEqual(self.exits, [0])

    def test_usage_named_in_help(self):
        self.assertIn("changepassword", USAGE)
