"""
The terminal client's drawing cost: messages shown on a TerminalConsole (the
status line and the live area drawn again each time) and full redraws on a
resize, over an in-memory transport.

Run: .venv/bin/python bench/bench_client_render.py
"""

import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatproto.client import ChatClient
from chatproto.client.terminal import TerminalConsole


class RawTerminal:
    def enter(self):
        pass

    def restore(self):
        pass

    def size(self):
        return (100, 40)


class Server:
    def __init__(self):
        self.sent = []
        self.transport = StringTransport()

    def send(self, line):
        self.sent.append(line)


def main(messages: int = 20000, resizes: int = 200) -> None:
    console = TerminalConsole(raw_terminal=RawTerminal(), clock=Clock())
    transport = StringTransport()
    console.makeConnection(transport)
    client = ChatClient(console, 6000, lambda status: None, clock=Clock())
    client.connected(Server())
    console.dataReceived(b"Yoda\rwise@!man\r")
    for reply in ("Welcome to chatproto!", "", "No groups."):  # the login, /users, /groups
        client.server_line("OK", reply)
    console.dataReceived(b"half typed line")

    start = time.perf_counter()
    for i in range(messages):
        group = "Jedi, " if i % 2 else ""
        client.server_line("MSG", f"01 Jun 2022 21:30:{i % 60:02d}, {group}user{i % 7}: message number {i}")
        transport.clear()
    elapsed = time.perf_counter() - start
    print(f"{messages} messages shown (the live area drawn again each time): {elapsed:.2f} s,"
          f" {elapsed / messages * 1e6:.0f} us each")

    start = time.perf_counter()
    for i in range(resizes):
        console.editor.terminalSize(60 + i % 40, 30)
        transport.clear()
    elapsed = time.perf_counter() - start
    print(f"{resizes} resizes (a full redraw each): {elapsed / resizes * 1e3:.2f} ms each")


if __name__ == "__main__":
    main()
