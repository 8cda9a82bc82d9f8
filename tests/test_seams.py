"""
No module outside chatproto/core/ touches the realm's private names: the
cluster and the front ends use the realm's public methods and the seams in
chatproto/core/interfaces.py (IPresence, IDelivery, IGroupNews, ILockout,
IAccounts) only.
"""

import ast
import pathlib

from twisted.trial.unittest import SynchronousTestCase

import chatproto
from chatproto.cluster.bus import ClusterBus
from chatproto.core.interfaces import IDelivery, IGroupChanges, IGroupNews, IPresence, IRealmOfNode
from chatproto.core.nodes import LocalNode
from chatproto.core.realm import ChatRealm

PACKAGE = pathlib.Path(chatproto.__file__).parent
REALM_NAMES = {"realm", "chat"}  # what code calls a ChatRealm: self.realm, factory.chat, realm


def _names(node) -> list[str]:
    """The dotted name of an expression, as a list (C{self.realm} -> [self, realm]); [] otherwise."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        inner = _names(node.value)
        return inner + [node.attr] if inner else []
    return []


def private_uses(source: str, filename: str = "<source>") -> list[str]:
    """Every C{X._name} in C{source} where X is a realm (its name ends in realm or chat)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = _names(node.value)
            if base and base[-1].lower().rsplit("_", 1)[-1] in REALM_NAMES:
                found.append(f"{filename}:{node.lineno}: {'.'.join(base)}.{node.attr}")
    return sorted(found, key=lambda entry: int(entry.split(":")[1]))


class SeamTests(SynchronousTestCase):
    def test_the_scan_finds_a_private_name(self):
        self.assertEqual(private_uses("self.realm._active.get(x)\nrealm._deliver(u, e)\nself.chat.groups()\n"),
                         ["<source>:1: self.realm._active", "<source>:2: realm._deliver"])

    def test_no_module_outside_the_core_touches_the_realm_s_private_names(self):
        found = []
        for path in sorted(PACKAGE.rglob("*.py")):
            if (PACKAGE / "core") in path.parents:
                continue
            found += private_uses(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
        self.assertEqual(found, [])

    def test_the_realm_and_the_bus_provide_the_seams(self):
        self.assertTrue(IRealmOfNode.implementedBy(ChatRealm))
        self.assertTrue(IGroupChanges.implementedBy(ChatRealm))
        for seam in (IPresence, IDelivery, IGroupNews):
            self.assertTrue(seam.implementedBy(LocalNode))
            self.assertTrue(seam.implementedBy(ClusterBus))
