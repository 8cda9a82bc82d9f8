"""chatproto: a multi-user messaging service on Twisted."""

__version__ = "0.1.0"
