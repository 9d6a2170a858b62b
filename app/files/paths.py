"""Paths as text: a one-to-one, reversible encoding for storage, and a one-line form for reports.

File names on POSIX are bytes. Valid UTF-8 names are stored as they are; a byte that is not
valid UTF-8 becomes ``\\xNN`` and a literal backslash becomes ``\\\\``, so that no two names
share a text (``a\\xff`` the bytes and ``a\\\\xff`` the five characters stay apart) and
``path_from_text`` gives the original bytes back.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# Undecodable bytes arrive as lone surrogates U+DC80..U+DCFF (the "surrogateescape" handler).
_STORE = {0x5C: "\\\\", **{0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)}}
_UNSTORE = re.compile(r"\\(\\|x[0-9a-f]{2})")
# Everything that would break a report's line: C0/C1 controls, DEL, line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def path_text(path: Path | str) -> str:
    """A path as storable text (see the module's docstring)."""
    if os.name == "nt":  # Windows names are already Unicode
        return str(path)
    return os.fsencode(path).decode("utf-8", "surrogateescape").translate(_STORE)


def path_from_text(text: str) -> Path:
    """The path whose ``path_text`` is ``text``."""
    if os.name == "nt":
        return Path(text)

    def unescape(match: re.Match) -> str:
        escaped = match.group(1)
        return "\\" if escaped == "\\" else chr(0xDC00 + int(escaped[1:], 16))

    return Path(os.fsdecode(_UNSTORE.sub(unescape, text).encode("utf-8", "surrogateescape")))


def one_line(text: str) -> str:
    """``text`` with control characters escaped, so that a report about it stays on one line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"
                                             if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), text)
