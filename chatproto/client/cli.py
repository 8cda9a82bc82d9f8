"""
The client's command line: C{python -m chatproto.client [options] [SERVER_IP
[SERVER_PORT [UDP_PORT]]]}. Reads the options and the configuration file,
picks the console (a terminal or plain lines), binds the UDP port for file
transfers, assembles the client (L{chatproto.client.ChatClient}) and runs the
reactor until it ends.
"""

import os
import sys

from twisted.internet import protocol

from . import files
from .app import ChatClient
from .model import ServerConnection

USAGE = ("Usage: python -m chatproto.client [--p2p-timeout SECONDS] [--no-reconnect | --reconnect] [--version]"
         " [--accept-files all|ask|none]"
         " [SERVER_IP [SERVER_PORT [UDP_PORT]]]")
DEFAULT_SERVER = "127.0.0.1"
DEFAULT_PORT = 9000
DEFAULT_UDP_PORT = 0
DEFAULT_P2P_TIMEOUT = 10.0


class Arguments:
    """What the command line (and the configuration file) asked for."""

    def __init__(self):
        self.host = DEFAULT_SERVER
        self.server_port = DEFAULT_PORT
        self.udp_port = DEFAULT_UDP_PORT
        self.p2p_timeout = DEFAULT_P2P_TIMEOUT
        self.reconnect = None  # None: on a terminal only
        self.version = False
        self.help = False

    def __iter__(self):  # host, server_port, udp_port, timeout (the older tuple)
        return iter((self.host, self.server_port, self.udp_port, self.p2p_timeout))


def _port(value: str, lowest: int) -> int:
    if not (value.isascii() and value.isdigit()) or not lowest <= int(value) < 65536:
        raise ValueError(f"invalid port: {value!r}")
    return int(value)


def parse_arguments(argv: list[str], config=None) -> Arguments:
    """C{[--p2p-timeout SECONDS] [--no-reconnect|--reconnect] [SERVER_IP [SERVER_PORT [UDP_PORT]]]}."""
    config = config or {}
    args = Arguments()
    args.host = config.get("server", args.host)
    args.server_port = config.get("port", args.server_port)
    args.udp_port = config.get("udp_port", args.udp_port)
    args.reconnect = config.get("reconnect")
    positional = []
    argv = list(argv)
    while argv:
        arg = argv.pop(0)
        if arg.startswith("--p2p-timeout"):
            if "=" in arg:
                value = arg.partition("=")[2]
            elif argv:
                value = argv.pop(0)
            else:
                value = ""
            try:
                timeout = float(value)
            except ValueError:
                timeout = 0
            if not 0 < timeout <= 3600:
                raise ValueError(f"invalid --p2p-timeout: {value!r}")
            args.p2p_timeout = timeout
        elif arg == "--no-reconnect":
            args.reconnect = False
        elif arg == "--reconnect":
            args.reconnect = True
        elif arg == "--version":
            args.version = True
        elif arg in ("--help", "-h"):
            args.help = True
        elif arg == "--":
            positional.extend(argv)
            break
        elif arg.startswith("-") and len(arg) > 1:
            raise ValueError(f"unknown option: {arg}")
        else:
            positional.append(arg)
    if len(positional) > 3:
        raise ValueError("wrong number of arguments")
    if positional:
        args.host = positional[0]
    if len(positional) > 1:
        args.server_port = _port(positional[1], 1)
    if len(positional) > 2:
        args.udp_port = _port(positional[2], 0)
    return args


def make_console():
    from .console import LineConsole, stdin_is_terminal

    if stdin_is_terminal():
        try:
            from .terminal import TerminalConsole
        except ImportError:
            return LineConsole(interactive=True), None
        return TerminalConsole(), "terminal"
    return LineConsole(interactive=False), None


def _print_help() -> None:
    from .config import config_path

    print(USAGE)
    print(f"  SERVER_IP SERVER_PORT: the server (default {DEFAULT_SERVER} {DEFAULT_PORT})")
    print("  UDP_PORT: where this client receives files from other clients (/p2pvideo);"
          " 0 (the default) picks a free one")
    print("  --p2p-timeout SECONDS: give a silent transfer up after this long (default 10)")
    print("  --no-reconnect: exit 1 when the server goes away (the default when stdin is not a terminal)")
    print("  --reconnect: when the server goes away, log in again once it is back (the default on a"
          " terminal)")
    print("  --version: print the version and exit")
    print(files.OPTION_HELP)
    print(f"  Settings (server, port, udp_port, username, colours, reconnect): {config_path()}")


def main(argv=None) -> None:
    from .config import ConfigError, load_config, version

    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        try:
            _print_help()
            sys.stdout.flush()
        except BrokenPipeError:  # `--help | head`: the reader has what it wanted; no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    if "--version" in argv:
        print(f"chatproto-client {version()}")
        sys.exit(0)
    try:
        config = load_config()
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        argv, accept_files = files.take_option(argv)
        args = parse_arguments(argv, config)
    except ValueError as e:
        print(f"{USAGE} ({e})", file=sys.stderr)
        sys.exit(2)

    from twisted.internet import endpoints, reactor, stdio
    from twisted.internet.error import CannotListenError, ReactorNotRunning

    from .reconnect import Reconnector

    status = {"code": 0}

    def on_exit(code):
        status["code"] = code
        try:
            reactor.stop()
        except ReactorNotRunning:  # already stopping (a signal) or never started
            pass

    console, kind = make_console()
    reconnect = args.reconnect if args.reconnect is not None else kind == "terminal"
    factory = protocol.Factory.forProtocol(lambda: ServerConnection(client.model))

    def connect_once():
        endpoint = endpoints.TCP4ClientEndpoint(reactor, args.host, args.server_port, timeout=10)
        return endpoint.connect(factory)

    reconnector = None
    if reconnect:
        reconnector = Reconnector(reactor, connect_once,
                                  on_attempt=lambda n, delay: client.model.reconnect_attempt(n, delay))
    colours = config.get("colours", True) and not os.environ.get("NO_COLOR")
    client = ChatClient(console, 0, on_exit, clock=reactor, reconnector=reconnector,
                        username=config.get("username"), colours=colours)
    client.files.policy = accept_files
    try:
        client.transfers, udp_port = start_transfers(reactor, args.udp_port, client, args.p2p_timeout)
    except CannotListenError as e:
        print(f"Error: cannot use UDP port {args.udp_port}: {e.socketError}", file=sys.stderr)
        sys.exit(1)
    client.udp_port = udp_port
    if args.udp_port == 0:
        # Any free port: say which (on stderr when piped, so stdout keeps only the fixed lines).
        print(f"Receiving files on UDP port {udp_port}",
              file=sys.stdout if kind == "terminal" else sys.stderr)

    def connect():
        def failed(failure):
            print(f"Error: cannot connect to {args.host}:{args.server_port}: "
                  f"{failure.getErrorMessage()}", file=sys.stderr)
            client.exit(1)  # closes the console too (a terminal is restored)

        connect_once().addErrback(failed)

    stdio.StandardIO(console)
    reactor.callWhenRunning(connect)
    reactor.run()
    sys.stdout.flush()
    sys.exit(status["code"])


def start_transfers(reactor, udp_port: int, client, idle_timeout: float = 10.0):
    """
    Bind the UDP port where peers send us files (raises CannotListenError);
    returns the transfer endpoint (or None) and the port bound.
    """
    try:
        from ..transfer import TransferEndpoint, listen_udp
    except ImportError:
        from twisted.internet.protocol import DatagramProtocol

        port = reactor.listenUDP(udp_port, DatagramProtocol())
        return None, port.getHost().port
    endpoint = TransferEndpoint(os.getcwd(), client.files, clock=reactor, idle_timeout=idle_timeout)
    port = listen_udp(reactor, udp_port, endpoint)
    return endpoint, port.getHost().port
