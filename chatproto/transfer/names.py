"""
Which names a transfer may use: the presenter's, the file's base name, the
name a received file is stored under (docs/TRANSFER.md, Verification, files, names).
"""

from __future__ import annotations

MAX_REASON = 200  # bytes of a FAIL reason (and characters of a printable text)

MAX_PRESENTER = 64
NAME_MAX = 255  # bytes of a file name on common file systems


def check_presenter(presenter: str) -> str | None:
    """
    Return why C{presenter} cannot prefix a file name, or L{None} if it can.

    A plain name is 1 to 64 bytes (UTF-8) of printable characters without
    whitespace or path separators, not starting with a dot.
    """
    if not presenter or len(presenter.encode("utf-8", "surrogatepass")) > MAX_PRESENTER:
        return "the presenter's name is empty or too long"
    if not presenter.isprintable() or any(c.isspace() for c in presenter):
        return "the presenter's name is not plain"
    if "/" in presenter or "\\" in presenter or presenter.startswith("."):
        return "the presenter's name is not plain"
    return None


def check_basename(basename: str) -> str | None:
    """
    Return why C{basename} is not a safe base name, or L{None} if it is.

    Refused: empty, C{.} or C{..}, path separators, NUL and other control
    characters, more than 200 bytes of UTF-8.
    """
    if basename in ("", ".", ".."):
        return "the file name is empty"
    if "/" in basename or "\\" in basename or "\x00" in basename:
        return "the file name contains a path separator"
    if not basename.isprintable():
        return "the file name contains control characters"
    if len(basename.encode("utf-8", "surrogatepass")) > NAME_MAX - MAX_PRESENTER - 1:
        return "the file name is too long"
    return None


def final_name(presenter: str, basename: str) -> str:
    """The name the receiver stores a file under: C{PRESENTER_BASENAME}."""
    return f"{presenter}_{basename}"


def size_text(size: float) -> str:
    """C{size} bytes for a person: C{16 GiB}, C{78.4 GiB}, C{512 bytes}."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + " " + unit
    return f"{size:g} bytes"


def printable(text: str, limit: int = MAX_REASON) -> str:
    """C{text} with anything a terminal could interpret replaced."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])

