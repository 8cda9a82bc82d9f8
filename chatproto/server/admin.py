"""
C{chatproto-admin}: accounts and backups for an operator (docs/OPERATING.md).

    chatproto-admin [--credentials FILE | --config chatproto.toml] adduser NAME
    chatproto-admin ... passwd NAME
    chatproto-admin ... deluser NAME
    chatproto-admin ... list
    chatproto-admin [--data-dir DIR] [--database URL] ... backup DEST

Each change is one atomic rewrite of the credentials file that keeps every
other line byte for byte; a running server picks it up at once (it watches
the file, and reloads on SIGHUP). Passwords are asked twice (without echo on
a terminal; from two lines of stdin otherwise) and stored as bcrypt hashes.
"""

import argparse
import getpass
import sys

from ..core.errors import ChatError
from ..core.passwords import check_new_password, hash_password, is_hashed
from ..texts import error_text
from ..storage.credentials import (
    AccountExists,
    AccountNotInFile,
    add_account,
    delete_account,
    parse_credentials,
    rewrite_credentials,
    username_problem,
)
from . import package_version
from .config import ConfigError, read_config
from .options import DEFAULT_DATABASE

EXIT_FAILED, EXIT_USAGE = 1, 2


class Failed(Exception):
    """One line for the operator, exit status 1."""


def ask_password(stdin=None) -> str:
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Password (again): ")
    else:  # scripts: two lines on stdin
        first, second = stdin.readline().rstrip("\r\n"), stdin.readline().rstrip("\r\n")
    if first != second:
        raise Failed("The passwords do not match; nothing changed.")
    try:
        check_new_password(first)
    except ChatError as e:
        raise Failed(error_text(e) + " Nothing changed.") from None
    return first


def check_name(name: str) -> None:
    problem = username_problem(name)
    if problem:
        raise Failed(f"Invalid username {name!r}: {problem}.")


def read_accounts(path: str) -> dict:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            secrets, problems = parse_credentials(path, f.read())
    except FileNotFoundError:
        raise Failed(f"{path}: no such file") from None
    except OSError as e:
        raise Failed(f"{path}: {e.strerror}") from None
    for problem in problems:
        print(problem, file=sys.stderr)
    return secrets


def adduser(args) -> str:
    check_name(args.name)
    if _exists(args.credentials) and args.name in read_accounts(args.credentials):
        raise Failed(f"{args.name} has an account already (chatproto-admin passwd {args.name} changes "
                     "its password).")
    secret = hash_password(ask_password())
    try:
        add_account(args.credentials, args.name, secret)
    except AccountExists:
        raise Failed(f"{args.name} has an account already.") from None
    return f"Added {args.name}."


def passwd(args) -> str:
    if args.name not in read_accounts(args.credentials):
        raise Failed(f"No account {args.name!r} in {args.credentials}.")
    secret = hash_password(ask_password())
    try:
        rewrite_credentials(args.credentials, args.name, secret)
    except AccountNotInFile:
        raise Failed(f"No account {args.name!r} in {args.credentials}.") from None
    return f"Changed the password of {args.name}."


def deluser(args) -> str:
    try:
        delete_account(args.credentials, args.name)
    except AccountNotInFile:
        raise Failed(f"No account {args.name!r} in {args.credentials}.") from None
    return f"Deleted {args.name}; if logged in, they are logged out."


def list_accounts(args) -> str:
    secrets = read_accounts(args.credentials)
    for name in sorted(secrets):
        print(f"{name} {'bcrypt' if is_hashed(secrets[name]) else 'plain-text'}")
    return ""


def backup(args) -> str:
    from .backup import backup_stopped
    from .datadir import DataDirectoryInUse

    try:
        copied = backup_stopped(args.data_dir, args.database, args.credentials, args.dest)
    except DataDirectoryInUse:
        raise Failed(f"A server is running on {args.data_dir}: it holds the database. Send it SIGUSR2 "
                     f"(systemctl kill -s USR2 chatproto) and it writes a backup into "
                     f"{args.data_dir}/backups/.") from None
    return f"Backed up {len(copied)} files into {args.dest}."


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatproto-admin",
                                description="Manage chatproto's accounts and backups.")
    p.add_argument("--version", action="version", version=f"chatproto-admin {package_version()}")
    p.add_argument("--config", help="take --credentials, --data-dir and --database from this chatproto.toml")
    p.add_argument("--credentials", help="the accounts file (default: credentials.txt)")
    p.add_argument("--data-dir", help="the server's data directory, for backup (default: .)")
    p.add_argument("--database", help=f"the server's --database, for backup (default: {DEFAULT_DATABASE})")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, function, text in [("adduser", adduser, "add an account (asks for its password twice)"),
                                 ("passwd", passwd, "change an account's password"),
                                 ("deluser", deluser, "delete an account (logged out if logged in)")]:
        sub = commands.add_parser(name, help=text)
        sub.add_argument("name", metavar="NAME")
        sub.set_defaults(function=function)
    commands.add_parser("list", help="list the accounts").set_defaults(function=list_accounts)
    sub = commands.add_parser("backup", help="copy a stopped server's database and logs into DEST")
    sub.add_argument("dest", metavar="DEST")
    sub.set_defaults(function=backup)
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    config = {}
    try:
        if args.config:
            config = read_config(args.config)
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    args.credentials = args.credentials or config.get("credentials") or "credentials.txt"
    args.data_dir = args.data_dir or config.get("data-dir") or config.get("data_dir") or "."
    args.database = args.database or config.get("database") or DEFAULT_DATABASE
    try:
        done = args.function(args)
    except Failed as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except OSError as e:
        print(f"Error: {e.filename or args.credentials}: {e.strerror}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        print("\nInterrupted; nothing changed.", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    if done:
        print(done)


if __name__ == "__main__":
    main()
