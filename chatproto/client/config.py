"""
The client's optional configuration file and its version.

C{$XDG_CONFIG_HOME/chatproto/client.toml} (C{~/.config/chatproto/client.toml}
when C{XDG_CONFIG_HOME} is unset), read with the standard C{tomllib}::

    server = "127.0.0.1"
    port = 9000
    udp_port = 0
    username = "Yoda"
    colours = true        # false: no colours (NO_COLOR in the environment does the same)
    reconnect = true      # on a terminal; pipes never reconnect unless --reconnect
"""

import os
import tomllib

FALLBACK_VERSION = "0.1.0"

_TYPES = {
    "server": str,
    "port": int,
    "udp_port": int,
    "username": str,
    "colours": bool,
    "colors": bool,
    "reconnect": bool,
}


class ConfigError(ValueError):
    """The file exists but cannot be used: the message names it and why."""


def config_path(environ=None) -> str:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "chatproto", "client.toml")


def load_config(environ=None) -> dict:
    """The settings of the configuration file; {} when there is none."""
    path = config_path(environ)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    settings = {}
    for key, value in data.items():
        wanted = _TYPES.get(key)
        if wanted is None:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            what = {str: "a string", int: "an integer", bool: "true or false"}[wanted]
            raise ConfigError(f"{path}: {key} must be {what}")
        settings["colours" if key == "colors" else key] = value
    for key in ("port", "udp_port"):
        if key in settings and not (0 if key == "udp_port" else 1) <= settings[key] < 65536:
            raise ConfigError(f"{path}: {key} out of range: {settings[key]}")
    return settings


def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version as package_version
    except ImportError:  # pragma: no cover
        return FALLBACK_VERSION
    try:
        return package_version("chatproto")
    except PackageNotFoundError:
        return FALLBACK_VERSION
