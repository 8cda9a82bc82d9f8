"""
C{--config chatproto.toml}: every server option from a TOML file, for both
C{python -m chatproto.server} and C{twistd chat}.

The file's keys are the options' long names (C{max-output}, or
C{max_output}); the table of what exists is the L{usage.Options} class's own
C{optParameters} and C{optFlags} (and the positional arguments it names in
C{config_positional}), so an option added there is at once a setting of the
file. Precedence: an option given on the command line, then the file, then
the default. C{--print-config} shows each effective setting and where it
came from, then exits.

An unknown key, a value of the wrong type or one the option's own check
refuses is one line naming the file and the key, and exit status 2.
"""

import difflib
import os
import sys
import tomllib

from twisted.python import reflect, usage

NOT_SETTINGS = {"help", "version", "config", "print-config"}
DEFAULT, COMMAND_LINE = "default", "command line"


class ConfigError(usage.UsageError):
    """A problem with the configuration file: one line, exit status 2."""


def read_config(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration file: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def settings_of(options: usage.Options) -> tuple[list[str], set[str]]:
    """Every setting C{options} has (in the order of its table) and which of them are flags."""
    parameters: list = []
    flags: list = []
    reflect.accumulateClassList(options.__class__, "optParameters", parameters)
    reflect.accumulateClassList(options.__class__, "optFlags", flags)
    names = list(getattr(options, "config_positional", ()))
    names += [p[0] for p in parameters] + [f[0] for f in flags]
    seen, ordered = set(), []
    for name in names:
        if name not in seen and name not in NOT_SETTINGS:
            seen.add(name)
            ordered.append(name)
    return ordered, {f[0] for f in flags}


def _value_text(path: str, key: str, value, flag: bool):
    """A TOML value as the option's command-line text (flags: 1 or 0)."""
    if flag:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {key} = {_toml(value)}: expected true or false")
        return 1 if value else 0
    if isinstance(value, bool):
        raise ConfigError(f"{path}: {key} = {_toml(value)}: expected a string or a number, not true/false")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise ConfigError(f"{path}: {key} = {_toml(value)}: expected a string or a number")


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and len(value) < 16:
            return value
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if value is None:
        return "(not set)"
    return _toml(str(value))


class ConfigurableOptions:
    """
    Mixed into a L{usage.Options} (before it): records which settings the
    command line gave. Its C{postOptions} calls L{apply_config} first.
    """

    config_positional: tuple = ()

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.__dict__.setdefault("_given", set()).add(key)

    def apply_config(self) -> None:
        apply_config(self)

    def check_config(self, check) -> None:
        """Run the options' own checks (C{check()}); name the file's key in what they refuse."""
        check_config(self, check)


def apply_config(options) -> None:
    """Fill in the settings the command line did not give from C{options["config"]}."""
    given = set(options.__dict__.get("_given", ()))
    names, flags = settings_of(options)
    sources = {name: (COMMAND_LINE if name in given else DEFAULT) for name in names}
    options.config_sources = sources
    options.config_values = {}
    path = options.get("config")
    if not path:
        return
    config = read_config(path)
    known = {name.replace("-", "_"): name for name in names}
    for key, value in config.items():
        name = key if key in sources else known.get(key)
        if name is None:
            close = difflib.get_close_matches(key, names, 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{path}: unknown setting {key!r}{hint}")
        text = _value_text(path, key, value, name in flags)
        options.config_values[name] = (key, value)
        if sources[name] == COMMAND_LINE:
            continue
        dict.__setitem__(options, name, text)
        sources[name] = path


def check_config(options, check) -> None:
    try:
        check()
    except ConfigError:
        raise
    except usage.UsageError as e:
        path = options.get("config")
        from_file = {name: kv for name, kv in getattr(options, "config_values", {}).items()
                     if options.config_sources.get(name) == path}
        if not from_file:
            raise
        message = str(e)
        blamed = [(key, value) for name, (key, value) in from_file.items()
                  if f"--{name}" in message or _quoted_in(value, message)]
        if len(blamed) == 1:
            key, value = blamed[0]
            raise ConfigError(f"{path}: {key} = {_toml(value)}: {message}") from None
        raise ConfigError(f"{path}: {message}") from None


def _quoted_in(value, message: str) -> bool:
    text = ",".join(value) if isinstance(value, list) else str(value)
    return (f"'{text}'" in message or f": {text}." in message or f": {text} " in message
            or message.endswith(f" {text}"))


def print_config(options, snapshot: dict, out=None) -> None:
    """Each setting as TOML, with where its value came from."""
    try:
        _print_config(options, snapshot, out or sys.stdout)
        (out or sys.stdout).flush()
    except BrokenPipeError:  # | head: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _print_config(options, snapshot: dict, out) -> None:
    names, flags = settings_of(options)
    path = options.get("config")
    print(f"# effective settings ({'file ' + path if path else 'no configuration file'})", file=out)
    for name in names:
        value = snapshot.get(name)
        if name in flags:
            value = bool(value)
        source = options.config_sources.get(name, DEFAULT)
        if source == path and name in getattr(options, "config_values", {}):
            value = options.config_values[name][1]  # as the file wrote it (a list stays a list)
        print(f"{name} = {_toml(value)}  # {source}", file=out)
