"""
The modules' dependencies, read from their source: no import cycles (one
module per concern, each importable on its own), and the client and the
IRC and web front ends do not lean on the line protocol's front end.
"""

import ast
import os

import chatproto

ROOT = os.path.dirname(chatproto.__file__)


def modules() -> dict[str, str]:
    found = {}
    for directory, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = "chatproto" + path[len(ROOT):-3].replace(os.sep, ".")
                found[module.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the chatproto modules it imports, at its top or inside a function."""
    known = modules()
    graph = {}
    for module, path in known.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parent + ([base] if base else []))
                submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
                names = submodules if len(submodules) == len(node.names) else [base, *submodules]
            else:
                continue
            for name in names:
                while name and name not in known:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    imported.add(name)
        graph[module] = imported
    return graph


def reachable(graph, start) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for name in graph[todo.pop()]:
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_no_import_cycles():
    graph = import_graph()
    cycles = sorted(module for module in graph if module in reachable(graph, module))
    assert cycles == []


def test_the_client_and_the_other_front_ends_do_not_import_the_line_front_end():
    graph = import_graph()
    for module in graph:
        if module.startswith(("chatproto.client", "chatproto.frontends.irc", "chatproto.frontends.web")):
            assert not any(name.startswith("chatproto.frontends.line") for name in graph[module]), module
    assert not any(name.startswith("chatproto.frontends") for name in reachable(graph, "chatproto.client"))


def test_the_front_ends_do_not_import_the_server():
    graph = import_graph()
    for module in graph:
        if module.startswith("chatproto.frontends"):
            assert not any(name.startswith("chatproto.server") for name in graph[module]), module
