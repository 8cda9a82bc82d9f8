"""
The line protocol front end (SPEC.md section 4): one L{ChatLineProtocol}
per TCP connection over the shared L{Chat} realm.

Each command is one method, found by name: C{login_LOGIN} before login,
C{cmd_<name>} for C{/name} after it, so a user who has not logged in simply
has no chat handlers.
"""

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from .chat import Chat
from .journal import EndOfTurn
from .errors import HAS_WHITESPACE, PASSWORD_CHANGED, ChatError, LoginFailed, UsageError

log = Logger()

MAX_LINE = 65536
DEFAULT_MAX_OUTPUT = 1024 * 1024
WELCOME = "Welcome to chatproto!"
INVALID_COMMAND = "Error. Invalid command!"
WELCOME_LINE = f"OK {WELCOME}\n".encode()
NO_OTHER_ACTIVE_USER = b"OK no other active user\n"
GROUP_SENT_LINE = b"OK Group chat message sent.\n"
NOT_SAVED_LINE = b"ERR Server error: the message could not be saved\n"
NOT_SAVED_LOGIN_LINE = b"ERR Server error: the login could not be recorded. Please try again later\n"
_sent_at = ["", b""]  # the last timestamp and its reply: most messages share their second


def sent_at_line(timestamp: str) -> bytes:
    """C{OK message sent at TIMESTAMP.}, formatted once a second."""
    if _sent_at[0] is not timestamp:
        _sent_at[:] = [timestamp, f"OK message sent at {timestamp}.\n".encode()]
    return _sent_at[1]

USAGE = {
    "LOGIN": "LOGIN USERNAME PASSWORD UDP_PORT",
    "msgto": "/msgto USERNAME MESSAGE",
    "activeuser": "/activeuser",
    "creategroup": "/creategroup GROUPNAME USERNAME [USERNAME ...]",
    "joingroup": "/joingroup GROUPNAME",
    "groupmsg": "/groupmsg GROUPNAME MESSAGE",
    "p2pvideo": "/p2pvideo USERNAME FILENAME",
    "leavegroup": "/leavegroup GROUPNAME",
    "changepassword": "/changepassword CURRENT NEW",
    "deletemsg": "/deletemsg SEQ",
    "deletegroupmsg": "/deletegroupmsg GROUPNAME SEQ",
    "createbroadcast": "/createbroadcast GROUPNAME USERNAME [USERNAME ...]",
    "help": "/help",
    "logout": "/logout",
}


def usage(command: str) -> UsageError:
    return UsageError(f"Usage: {USAGE[command]}")


def split_args(args: str, command: str, count: int) -> list[str]:
    """Exactly C{count} whitespace-separated arguments, or a usage error."""
    parts = args.split()
    if len(parts) != count:
        raise usage(command)
    return parts


def parse_seq(text: str, command: str) -> int:
    """A record's SEQ: a positive decimal number, or a usage error."""
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise usage(command)
    return int(text)


def split_message(args: str, command: str) -> tuple[str, str]:
    """C{NAME MESSAGE}: the message is the rest of the line, spaces kept."""
    parts = args.split(None, 1)
    if len(parts) != 2 or not parts[1].strip():
        raise usage(command)
    return parts[0], parts[1]


@implementer(IPushProducer)
class OutputBound:
    """
    Tells when output waits unsent for a client that does not keep up.

    The transport pauses its producer when its buffer is full and resumes it
    once the buffer has drained. While paused, the protocol measures what is
    really unsent (L{unsent_bytes}); for a transport that cannot tell, it
    counts what was written since the pause.
    """

    __slots__ = ("paused", "queued")

    def __init__(self):
        self.paused = False
        self.queued = 0

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self.queued = 0

    def stopProducing(self):
        pass


def unsent_bytes(transport) -> int | None:
    """
    Bytes waiting in the write buffer of a Twisted file-descriptor transport
    (TCP), or None for a transport that does not expose it (TLS, test doubles).
    """
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return None


def send_through(transport, data: bytes) -> int:
    """
    Send C{data} on a TCP transport's socket at once, when the transport has
    nothing waiting; return how many bytes the kernel took (0 when it cannot).

    Twisted would instead register the socket with epoll for writing, send at
    the next wake-up and unregister it: two more system calls and a dispatch
    per connection per turn, most of the cost of a fan-out to idle members.
    Only a plain C{tcp.Server} qualifies (not TLS, not a test double); the
    rest of C{data} goes through C{transport.write} as usual.
    """
    if (type(transport) is not tcp.Server or transport.dataBuffer or transport._tempDataBuffer
            or transport.disconnecting or not transport.connected):
        return 0
    try:
        return transport.socket.send(data)
    except OSError:
        return 0  # EAGAIN, or an error the transport will find and report


class OutputBatch:
    """
    Each connection's output of one reactor turn, joined and handed over
    once at the end of the turn, after the journal's batch (whose held
    replies join it).
    """

    def __init__(self, clock, journal):
        self.journal = journal
        self._dirty: list = []
        self._turn = EndOfTurn(clock, self.flush)
        journal.after_flush.append(self.flush)

    def add(self, protocol) -> None:
        self._dirty.append(protocol)
        self._turn.schedule()

    def flush(self) -> None:
        self._turn.cancel()
        if self.journal.pending:
            self.journal.flush()  # which ends by calling this again
            return
        dirty, self._dirty = self._dirty, []
        for protocol in dirty:
            try:
                protocol.send_output()
            except Exception:  # noqa: BLE001 - one broken connection must not stop the others' output
                protocol._out = None
                log.failure("sending output to {peer}", peer=getattr(protocol, "host", None))

    def stop(self) -> None:
        self.flush()
        if self.flush in self.journal.after_flush:
            self.journal.after_flush.remove(self.flush)


TOO_MANY_COMMANDS = "Too many commands; slow down"


def default_burst(rate: float) -> int:
    """Twice a second's worth of commands, at least one."""
    return max(1, int(2 * rate))


class CommandRate:
    """
    A token bucket for one connection's commands: C{rate} a second on
    average, bursts of up to C{burst}. Refilled from the clock's timestamps
    on each line; no timer runs for it.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        elapsed = max(0.0, now - self._last)  # a wall clock may step back
        self._last = now
        tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


class Refusal(Protocol):
    """Tells a connection over the caps why it is refused, then closes it."""

    def __init__(self, text: str):
        self.text = text

    def connectionMade(self):
        self.transport.write(b"ERR " + self.text.encode("utf-8") + b"\n")
        self.transport.loseConnection()


class ChatLineProtocol(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE + 1  # room for the "\r" of a "\r\n" delimiter

    def __init__(self, chat: Chat, max_output: int = DEFAULT_MAX_OUTPUT, batch: OutputBatch = None,
                 factory=None, rate=None, host=None):
        # Every attribute is set here, in one order: instances then share
        # their attribute layout (a small fraction of a dict each).
        self.chat = chat
        self.max_output = max_output
        self.batch = batch if batch is not None else OutputBatch(chat.clock, chat.journal)
        self.factory = factory
        self.rate = rate  # a CommandRate when the server limits commands
        self.host = host
        self.transport = None
        self.connected = 0
        self.user = None
        self._held = None  # output waiting for the journal, in order
        self._out = None  # output of this turn, for the batch
        self._closing = False  # close once the output is handed over
        self._dropped = False  # disconnected for not reading its output
        self._discarding = False  # inside an over-long line
        self._buffer = b""
        self._busyReceiving = False
        self.paused = False
        self._output = OutputBound()

    # Connection

    def connectionMade(self):
        self.transport.registerProducer(self._output, True)

    def connectionLost(self, reason):
        # Protocol never clears `connected`; every "is it still there?" check
        # (a login or a password check that ends later, held output) reads it.
        self.connected = 0
        self._dropped = True
        self._held = None
        self._out = None
        if self.user is not None:
            user, self.user = self.user, None
            self.chat.logout(user)
        factory = self.factory
        if factory is not None:
            factory.forget(self)

    # Output

    def _write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            return
        out = self._out
        if out is None:
            if self._dropped:
                return
            self._out = [data]
            self.batch.add(self)
        else:
            out.append(data)

    def send_output(self) -> None:
        """Hand this turn's output to the transport (the batch calls this)."""
        out, self._out = self._out, None
        if out and not self._dropped and self.connected:
            data = out[0] if len(out) == 1 else b"".join(out)
            transport = self.transport
            sent = send_through(transport, data)
            if sent < len(data):
                transport.write(data[sent:] if sent else data)
                if self._output.paused:
                    # A reader that keeps up, however slowly, keeps its backlog short.
                    unsent = unsent_bytes(transport)
                    if unsent is None:
                        self._output.queued += len(data) - sent
                        unsent = self._output.queued
                    if unsent > self.max_output:
                        self._drop_slow_reader()
                        return
        if self._closing and self._held is None and self.connected:
            self.transport.loseConnection()

    def close_when_sent(self) -> None:
        """Close the connection once the output owed to it is handed over."""
        self._closing = True
        if self._out is None and self._held is None:
            self.transport.loseConnection()

    def _reply(self, tag: bytes, text: str) -> None:
        if text:
            self._reply_line(tag + text.encode("utf-8", "surrogateescape") + b"\n")
        else:
            self._reply_line(tag.rstrip() + b"\n")

    def _reply_line(self, data: bytes) -> None:
        # A reply never overtakes a log write made before it: wait for the
        # journal's batch when one is pending.
        if self._held is None and self.chat.journal.pending:
            self._held = []
            self.chat.journal.when_durable(self._release)
        self._write(data)

    def ok(self, text: str = "") -> None:
        self._reply(b"OK ", text)

    def err(self, text: str) -> None:
        self._reply(b"ERR ", text)

    def data(self, text: str) -> None:
        self._write(b"DATA " + text.encode("utf-8", "surrogateescape") + b"\n")

    def deliver(self, delivery) -> None:
        """The session interface: the realm hands us a message or notice."""
        self._write(delivery.line)

    def notice(self, text: str) -> None:
        self._write(b"NOTICE " + text.encode("utf-8", "surrogateescape") + b"\n")

    def ok_logged(self, record_log, ok_line: bytes, err_line: bytes, undo=None) -> None:
        """
        Answer C{ok_line} once the record just appended to C{record_log} is
        on disk; if it cannot be written, C{err_line} instead (after
        C{undo()}).
        """
        if self._held is None:
            self._held = []
            self.chat.journal.when_durable(self._release)
        self._held.append((record_log, ok_line, err_line, undo))

    def _release(self, failed=frozenset()) -> None:
        held, self._held = self._held, None
        if held and self.transport is not None and self.connected:
            for data in held:
                if type(data) is tuple:
                    record_log, ok_line, err_line, undo = data
                    data = ok_line
                    if record_log in failed:
                        data = err_line
                        if undo is not None:
                            undo()
                self._write(data)

    def _drop_slow_reader(self) -> None:
        log.info("Dropping {peer}: more than {limit} bytes of output unread",
                 peer=self.transport.getPeer(), limit=self.max_output)
        self._dropped = True
        self.pauseProducing()  # nothing more it sent is read
        self.transport.write(b"NOTICE Disconnected: too much output waiting unread\n")
        if self.user is not None:
            user, self.user = self.user, None
            self.chat.logout(user)
        self.transport.abortConnection()

    # Input

    def dataReceived(self, data: bytes) -> None:
        """
        LineReceiver's framing, without re-slicing the whole buffer for every
        line (a client pipelining thousands of lines in one read costs linear
        time, not quadratic), and with an over-long line answered once and
        skipped up to its end, the session kept.
        """
        if self._busyReceiving:
            self._buffer += data
            return
        if self._dropped:
            return  # gone, or dropped for not reading: nothing more it sent is acted on
        self._busyReceiving = True
        try:
            self._buffer += data
            while self._buffer and not self.paused:
                buffer, self._buffer = self._buffer, b""
                if self._discarding:
                    end = buffer.find(b"\n")
                    if end < 0:
                        break
                    self._discarding = False
                    buffer = buffer[end + 1:]
                lines = buffer.split(b"\n")
                rest = lines.pop()
                for index, line in enumerate(lines):
                    if self.paused:
                        # Keep the lines not handled yet, ahead of any that arrived meanwhile.
                        self._buffer = b"\n".join(lines[index:]) + b"\n" + rest + self._buffer
                        return
                    if len(line) > self.MAX_LENGTH:
                        self.err("Line too long")
                    else:
                        self.lineReceived(line)
                if self.paused:  # the last line paused: what follows waits for its reply
                    self._buffer = rest + self._buffer
                    return
                if len(rest) > self.MAX_LENGTH:
                    self.err("Line too long")
                    self._discarding = True
                    rest = b""
                arrived, self._buffer = self._buffer, rest
                if not arrived:
                    break
                self._buffer += arrived
        finally:
            self._busyReceiving = False

    def lineReceived(self, line: bytes) -> None:
        # Every line takes a token, invalid ones too; the two framing errors
        # still come first.
        allowed = self.rate is None or self.rate.allow(self.chat.clock.seconds())
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > MAX_LINE:
            self.err("Line too long")
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.err("Invalid UTF-8")
            return
        if not allowed:
            self.err(TOO_MANY_COMMANDS)
            return
        command, _, args = text.lstrip().partition(" ")
        try:
            self.dispatch(command, args)
        except ChatError as e:
            self.err(e.text)
        except Exception:  # noqa: BLE001 - answered and logged; the session goes on
            log.failure("handling {command!r} from {user}", command=command, user=self.user_name)
            self.err("Server error")

    @property
    def user_name(self):
        return self.user.name if self.user is not None else None

    def dispatch(self, command: str, args: str) -> None:
        if self.user is None:
            method = self.LOGIN_COMMANDS.get(command)
            if method is None:
                raise ChatError("Please log in first")
        else:
            method = self.COMMANDS.get(command)
            if method is None:
                raise ChatError(INVALID_COMMAND)
        getattr(self, method)(args)

    # Before login

    def login_LOGIN(self, args: str) -> None:
        username, password, udp_port = split_args(args, "LOGIN", 3)
        if not (udp_port.isascii() and udp_port.isdigit()) or not 0 < int(udp_port) < 65536:
            raise usage("LOGIN")
        ip = self.transport.getPeer().host
        d = self.chat.login(username, password, ip, int(udp_port), self)
        d.addCallbacks(self._logged_in, self._login_refused)
        if not d.called:
            # A slow password check: keep the next lines for after it.
            self.pauseProducing()
            d.addBoth(lambda _: self.resumeProducing())

    def _logged_in(self, user) -> None:
        if not self.connected:
            self.chat.logout(user)
            return
        self.user = user
        self.ok_logged(self.chat.userlog, WELCOME_LINE, NOT_SAVED_LOGIN_LINE, undo=self._login_not_recorded)

    def _login_not_recorded(self) -> None:
        if self.user is not None:
            user, self.user = self.user, None
            self.chat.logout(user)

    def _login_refused(self, failure) -> None:
        failure.trap(LoginFailed)
        if self.connected:
            self.err(failure.value.text)

    # After login: one method per command

    def cmd_msgto(self, args: str) -> None:
        username, message = split_message(args, "msgto")
        timestamp = self.chat.send_private(self.user, username, message)
        self.ok_logged(self.chat.messagelog, sent_at_line(timestamp), NOT_SAVED_LINE)

    def cmd_activeuser(self, args: str) -> None:
        split_args(args, "activeuser", 0)
        others = self.chat.other_active_users(self.user)
        if not others:
            self._reply_line(NO_OTHER_ACTIVE_USER)
            return
        for other in others:
            self.data(f"{other.name}, {other.ip}, {other.udp_port}, active since {other.since}.")
        self.ok()

    def cmd_creategroup(self, args: str) -> None:
        self._create_group(args, "creategroup", broadcast=False)

    def _create_group(self, args: str, command: str, broadcast: bool) -> None:
        parts = args.split()
        if len(parts) < 2:
            raise usage(command)
        group = self.chat.create_group(self.user, parts[0], parts[1:], broadcast)
        kind = "Broadcast group" if broadcast else "Group chat room"
        self.ok(f"{kind} has been created, room name: {group.name}, "
                f"users in this room: {' '.join(group.members)}")

    def cmd_joingroup(self, args: str) -> None:
        (name,) = split_args(args, "joingroup", 1)
        group = self.chat.join_group(self.user, name)
        self.ok(f"Joined the group chat: {group.name} successfully.")

    def cmd_groupmsg(self, args: str) -> None:
        name, message = split_message(args, "groupmsg")
        group = self.chat.group_message(self.user, name, message)
        self.ok_logged(group.log, GROUP_SENT_LINE, NOT_SAVED_LINE)

    def cmd_p2pvideo(self, args: str) -> None:
        username, _filename = split_args(args, "p2pvideo", 2)
        peer = self.chat.peer_address(self.user, username)
        self._write(f"PEER {peer.name} {peer.ip} {peer.udp_port}\n".encode())
        self.ok()

    # Beyond the seed (SPEC.md section 6)

    def cmd_leavegroup(self, args: str) -> None:
        (name,) = split_args(args, "leavegroup", 1)
        group = self.chat.leave_group(self.user, name)
        self.ok(f"You have left the group chat {group.name}.")

    def cmd_changepassword(self, args: str) -> None:
        parts = args.split()
        if len(parts) > 2:
            raise ChatError(HAS_WHITESPACE)  # in CURRENT or NEW: either way no password
        if len(parts) != 2:
            raise usage("changepassword")
        current, new = parts
        d = self.chat.change_password(self.user, current, new)
        self._answer_later(d, lambda _: self.ok(PASSWORD_CHANGED))

    def cmd_deletemsg(self, args: str) -> None:
        (seq,) = split_args(args, "deletemsg", 1)
        seq = parse_seq(seq, "deletemsg")
        self.chat.delete_message(self.user, seq)
        self.ok(f"Message {seq} deleted.")

    def cmd_deletegroupmsg(self, args: str) -> None:
        name, seq = split_args(args, "deletegroupmsg", 2)
        seq = parse_seq(seq, "deletegroupmsg")
        self.chat.delete_group_message(self.user, name, seq)
        self.ok(f"Message {seq} deleted.")

    def cmd_createbroadcast(self, args: str) -> None:
        self._create_group(args, "createbroadcast", broadcast=True)

    def cmd_help(self, args: str) -> None:
        split_args(args, "help", 0)
        for command, form in USAGE.items():
            if getattr(self, "cmd_" + command, None) is not None:
                self.data(form)
        self.ok()

    def _answer_later(self, d, on_success) -> None:
        """
        Reply when C{d} fires: C{on_success(result)}, or C{ERR} with a
        L{ChatError}'s text. Lines that arrive meanwhile wait, so replies
        stay in order.
        """

        def failed(failure):
            if failure.check(ChatError):
                self.err(failure.value.text)
            else:
                log.failure("handling a command from {user}", failure, user=self.user_name)
                self.err("Server error")

        answered = []

        def answer(result, reply):
            answered.append(True)
            if self.connected:
                reply(result)

        d.addCallbacks(answer, answer, callbackArgs=(on_success,), errbackArgs=(failed,))
        if not answered:  # (d.called is no guide: d may wait on a chained Deferred)
            self.pauseProducing()
            d.addBoth(lambda _: self.resumeProducing())

    def cmd_logout(self, args: str) -> None:
        split_args(args, "logout", 0)
        user, self.user = self.user, None
        self.chat.logout(user)
        self.ok(f"Bye, {user.name}!")
        self.pauseProducing()  # nothing after /logout is read
        self.close_when_sent()


# The command word as typed -> the name of its method: LOGIN -> login_LOGIN before
# login, /msgto -> cmd_msgto after it. Built once from the methods' names.
ChatLineProtocol.LOGIN_COMMANDS = {
    name[len("login_"):]: name for name in dir(ChatLineProtocol) if name.startswith("login_")
}
ChatLineProtocol.COMMANDS = {
    "/" + name[len("cmd_"):]: name for name in dir(ChatLineProtocol) if name.startswith("cmd_")
}


class ChatServerFactory(ServerFactory):
    """
    Builds one L{ChatLineProtocol} per connection over the shared realm.

    @param rate_limit: commands a second allowed per connection on average
        (0: no limit), in bursts of up to C{rate_burst}.
    @param max_connections: connections allowed at once (0: no cap).
    @param max_connections_per_ip: connections allowed at once from one
        address (0: no cap).
    """

    noisy = False

    def __init__(self, chat: Chat, max_output: int = DEFAULT_MAX_OUTPUT, rate_limit: float = 0.0,
                 rate_burst: int = 0, max_connections: int = 0, max_connections_per_ip: int = 0):
        self.chat = chat
        self.max_output = max_output
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst or default_burst(rate_limit)
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.connections: set[ChatLineProtocol] = set()
        self._per_host: dict[str, int] = {}
        self.output = OutputBatch(chat.clock, chat.journal)

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        if self.max_connections and len(self.connections) >= self.max_connections:
            log.info("Refusing {addr}: {n} connections already", addr=addr, n=len(self.connections))
            return Refusal("Too many connections to this server; try again later")
        per_ip = self.max_connections_per_ip
        if per_ip and host is not None and self._per_host.get(host, 0) >= per_ip:
            log.info("Refusing {addr}: too many connections from it", addr=addr)
            return Refusal(f"Too many connections from {host}; try again later")
        rate = None
        if self.rate_limit > 0:
            rate = CommandRate(self.rate_limit, self.rate_burst, self.chat.clock.seconds())
        protocol = ChatLineProtocol(self.chat, self.max_output, self.output, self, rate, host)
        self.connections.add(protocol)
        if host is not None:
            self._per_host[host] = self._per_host.get(host, 0) + 1
        return protocol

    def forget(self, protocol: ChatLineProtocol) -> None:
        """C{protocol}'s connection is gone: it no longer counts toward the caps."""
        if protocol not in self.connections:
            return
        self.connections.discard(protocol)
        host = getattr(protocol, "host", None)
        if host is not None:
            left = self._per_host.get(host, 0) - 1
            if left > 0:
                self._per_host[host] = left
            else:
                self._per_host.pop(host, None)
