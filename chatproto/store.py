"""
Where the chat's shared state lives: who is active, which groups exist.

L{MemoryStore} keeps it in this process. The interface is kept small on
purpose: a store shared by several server processes (Redis hashes for users
and groups, pub/sub for deliveries) implements the same methods.
"""


class MemoryStore:
    __slots__ = ("_active", "_groups")

    def __init__(self):
        self._active: dict = {}  # username -> ActiveUser, in login order
        self._groups: dict = {}  # group name folded to lower case -> Group

    # Presence
    def active_user(self, username: str):
        return self._active.get(username)

    def add_active_user(self, user) -> None:
        self._active[user.name] = user

    def remove_active_user(self, username: str) -> None:
        self._active.pop(username, None)

    def active_users(self) -> list:
        return list(self._active.values())

    # Groups
    def group(self, name: str):
        return self._groups.get(name.lower())

    def add_group(self, group) -> None:
        self._groups[group.name.lower()] = group

    def remove_group(self, group) -> None:
        self._groups.pop(group.name.lower(), None)

    def groups(self) -> list:
        return list(self._groups.values())
