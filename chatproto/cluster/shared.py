"""
What an operator changes on one node, acting on the whole cluster: the
accounts (C{chatproto-admin adduser/passwd/deluser}, an edit of the
credentials file, C{/changepassword}) and the administrators' bans.

Both are handed to the realm when a node is assembled, in place of the
plain ones: L{SharedAccounts} wraps the node's credentials file, L{SharedBans}
the storage's ban store (PostgreSQL: every node reads the same bans). Each
tells the other nodes of a change over the bus (C{tell}, set by the bus) and
its Deferred fires once Redis has taken the news, so every node has been sent
it before the user or operator is answered.
"""

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from ..core.interfaces import IAccounts, IBanStore
from ..storage.credentials import (
    AccountExists,
    AccountNotInFile,
    add_account,
    delete_account,
    rewrite_credentials,
)
from .commands import Accounts, Ban

log = Logger()


def _nobody(command) -> defer.Deferred:
    return defer.succeed(None)


@implementer(IAccounts)
class SharedAccounts:
    """
    The node's accounts (a L{CredentialsFile}: one file shared by the nodes,
    or a copy each); a change seen on this node is told to every other
    node, which writes it into its own file and logs out a removed account's
    session there.
    """

    def __init__(self, accounts):
        self.accounts = accounts
        self.tell = _nobody
        self._applied: set = set()  # (name, secret or None) written here for another node

    @property
    def path(self) -> str:
        return self.accounts.path

    def __contains__(self, username) -> bool:
        return username in self.accounts

    def secret(self, username):
        return self.accounts.secret(username)

    def names(self):
        return self.accounts.names()

    def set_secret(self, username, secret) -> defer.Deferred:
        """C{/changepassword}: stored here, then on every node (the bcrypt hash, never the password)."""
        d = self.accounts.set_secret(username, secret)
        return d.addCallback(lambda _: self.tell(Accounts({username: secret}, [])))

    def reload(self):
        """Read the file again; what changed in it (an operator's edit) is told to every node."""
        before = {name: self.accounts.secret(name) for name in self.accounts.names()}
        self.accounts.reload()
        after = {name: self.accounts.secret(name) for name in self.accounts.names()}
        applied, self._applied = self._applied, set()
        changed = {name: secret for name, secret in after.items()
                   if before.get(name) != secret and (name, secret) not in applied}
        removed = [name for name in before if name not in after and (name, None) not in applied]
        if changed or removed:
            self.tell(Accounts(changed, removed))
        return self

    def apply(self, changed: dict, removed: list) -> None:
        """
        Changes made on another node, written into this node's file (each an
        atomic rewrite; a file shared with that node has them already). The
        caller then reloads the realm's accounts, which logs out a removed
        account's session here.
        """
        path = self.accounts.path
        for name, secret in changed.items():
            self._applied.add((name, secret))
            if self.accounts.secret(name) == secret:
                continue
            try:
                if name in self.accounts:
                    rewrite_credentials(path, name, secret)
                else:
                    add_account(path, name, secret)
            except (AccountExists, AccountNotInFile):
                pass  # the file had it already (shared, or edited meanwhile): the reload reads it
        for name in removed:
            self._applied.add((name, None))
            try:
                delete_account(path, name)
            except (AccountNotInFile, FileNotFoundError):
                pass


@implementer(IBanStore)
class SharedBans:
    """The storage's bans (PostgreSQL: the same for every node); each change told to every node."""

    def __init__(self, store):
        self.store = store
        self.tell = _nobody

    def bans(self):
        return self.store.bans()

    def save_ban(self, username, until) -> defer.Deferred:
        d = self.store.save_ban(username, until)
        return d.addCallback(lambda _: self.tell(Ban(username, until)))

    def remove_ban(self, username) -> defer.Deferred:
        d = self.store.remove_ban(username)
        return d.addCallback(lambda _: self.tell(Ban(username, None)))
