"""
The messages nodes send each other over Redis, one small class each, as
Synapse's replication commands are (C{synapse/replication/tcp/commands.py}):
a C{NAME} (the C{"t"} of its JSON on the C{all} channel), C{from_json} that
checks what arrives and C{to_json} for what is sent, and a map from name to
class. A node hands each command to its handler C{on_NAME}; a message that
is not JSON, names no known command or lacks a field is logged and dropped
(L{BadCommand}), never half applied.

On a node's own channel (C{node:ID}) the messages are L{Deliveries} (key
C{e}) and L{EndSessions} (key C{end}).
"""

from dataclasses import dataclass, field, fields


class BadCommand(ValueError):
    """A bus message that cannot be read (its text says why)."""


@dataclass
class Command:
    """A command for every node: C{node} is the node that sent it (the bus sets it when it sends)."""

    NAME = ""
    KEYS = ()  # the JSON keys of the fields, in order

    node: str = field(default="", kw_only=True)

    @classmethod
    def from_json(cls, payload: dict) -> "Command":
        try:
            values = [payload[key] for key in cls.KEYS]
            node = payload["n"]
        except KeyError as e:
            raise BadCommand(f"{cls.NAME} without {e.args[0]!r}") from None
        if not isinstance(node, str):
            raise BadCommand(f"{cls.NAME} from a node that is not named")
        command = cls(*values, node=node)
        command.check()
        return command

    def check(self) -> None:
        """Raise L{BadCommand} when a field has the wrong shape."""

    def to_json(self) -> dict:
        payload = {"t": self.NAME, "n": self.node}
        for key, one in zip(self.KEYS, [one for one in fields(self) if one.name != "node"]):
            payload[key] = getattr(self, one.name)
        return payload


def _list_of_lists(value, what: str) -> None:
    if not isinstance(value, list) or not all(isinstance(one, list) for one in value):
        raise BadCommand(f"{what}: not a list of lists")


@dataclass
class Sessions(Command):
    """Each named account's sessions on the sending node now: C{[[name, [entry, ...]], ...]},
    an entry C{[sid, front end, ip, udp_port, since, since_time]} (none: gone from there)."""

    NAME, KEYS = "on", ("u",)
    accounts: list

    def check(self) -> None:
        _list_of_lists(self.accounts, self.NAME)
        for one in self.accounts:
            if len(one) != 2 or not isinstance(one[0], str):
                raise BadCommand(f"{self.NAME}: an account is not [name, sessions]")
            _list_of_lists(one[1], self.NAME)
            if any(len(entry) < 6 for entry in one[1]):
                raise BadCommand(f"{self.NAME}: a session without its six fields")


@dataclass
class Off(Command):
    """The named accounts have no session left on the node C{node} (C{gone}: it died, told by
    whichever node saw it first)."""

    NAME, KEYS = "off", ("u",)
    names: list
    gone: bool = False

    @classmethod
    def from_json(cls, payload: dict) -> "Off":
        command = super().from_json(payload)
        command.gone = bool(payload.get("gone"))
        return command

    def check(self) -> None:
        if not isinstance(self.names, list) or not all(isinstance(name, str) for name in self.names):
            raise BadCommand("off: not a list of names")

    def to_json(self) -> dict:
        payload = super().to_json()
        if self.gone:
            payload["gone"] = True
        return payload


@dataclass
class Away(Command):
    """C{username} set (C{text}) or cleared (None) their away message."""

    NAME, KEYS = "away", ("u", "x")
    username: str
    text: str | None


@dataclass
class GroupChange(Command):
    """One committed group operation (the ledger's): C{["group", key, name, owner, broadcast,
    first_seq]}, C{["member", key, name, joined]}, C{["unmember", key, name]}, C{["ungroup", key]}."""

    NAME, KEYS = "group", ("op",)
    op: list

    ARITY = {"group": 5, "member": 4, "unmember": 3, "ungroup": 2}

    def check(self) -> None:
        if not isinstance(self.op, list) or not self.op or len(self.op) < self.ARITY.get(self.op[0], 99):
            raise BadCommand(f"group: not an operation: {self.op!r}"[:200])


@dataclass
class Accounts(Command):
    """Accounts changed on the sending node: C{changed} name -> secret, C{removed} names."""

    NAME, KEYS = "accounts", ("set", "del")
    changed: dict
    removed: list


@dataclass
class Ban(Command):
    """An administrator's ban of C{username} until C{until} (None: lifted)."""

    NAME, KEYS = "ban", ("u", "until")
    username: str
    until: float | None


@dataclass
class Deleted(Command):
    """A message deleted through the sending node: its record may be in another node's file."""

    NAME, KEYS = "deleted", ("log", "seq", "by")
    log: str | None
    seq: int
    by: str


@dataclass
class Block(Command):
    """The lockout blocked C{username} until C{until} (epoch seconds)."""

    NAME, KEYS = "block", ("u", "until")
    username: str
    until: float


COMMANDS = {cls.NAME: cls for cls in (Sessions, Off, Away, GroupChange, Accounts, Ban, Deleted, Block)}


def parse(payload) -> Command:
    """The command of a message on the C{all} channel (its JSON decoded), or L{BadCommand}."""
    if not isinstance(payload, dict):
        raise BadCommand("not a JSON object")
    cls = COMMANDS.get(payload.get("t"))
    if cls is None:
        raise BadCommand(f"unknown command {payload.get('t')!r}"[:100])
    return cls.from_json(payload)
