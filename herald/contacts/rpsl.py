"""Streaming RPSL parser: database dumps one object at a time.

Format (RFC 2622 section 2, and the RIPE Database documentation "RPSL object format"): an object
is a run of ``attribute: value`` lines; objects are separated by one or more blank lines; a line
that starts with a space, a tab or ``+`` continues the previous attribute's value (``+`` stands
for an empty continuation line); lines starting with ``%`` or ``#`` are comments (the RIR dumps
start with such a header); attribute names are case-insensitive.  An end-of-line comment (``#``
to the end of the line, RFC 2622 section 2) is removed from values when it follows white space.

The first attribute names the object class (``inetnum``, ``inet6num``, ``aut-num``,
``organisation``, ``role``, ``person``, ``route``, ...).  Dumps are read as they are downloaded,
plain or gzip-compressed (RIPE's split files ``ripe.db.<class>.gz``; the whole dumps of APNIC,
AFRINIC and LACNIC, which hold every class in one file): :func:`open_dump` detects gzip by its
magic bytes.  Text is decoded as UTF-8; the few legacy Latin-1 bytes in old objects are replaced
(U+FFFD), they never occur in the attributes Herald reads.

Memory: only the current object is held, so a whole dump never is.
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator

_GZIP_MAGIC = b"\x1f\x8b"
_ATTR_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*):(.*)$")
_EOL_COMMENT_RE = re.compile(r"\s#.*$")


@dataclass
class RpslObject:
    """One RPSL object.

    Attributes:
        attributes: ``(name, value)`` pairs in file order; names lower-cased, values stripped,
            continuation lines joined with one space.
        line: 1-based line number of the object's first attribute in its file (for messages).
    """

    attributes: list[tuple[str, str]] = field(default_factory=list)
    line: int = 0

    @property
    def object_class(self) -> str:
        """The class: the name of the first attribute (``""`` for an empty object)."""
        return self.attributes[0][0] if self.attributes else ""

    @property
    def key(self) -> str:
        """The value of the first attribute (the primary key for most classes)."""
        return self.attributes[0][1] if self.attributes else ""

    def first(self, name: str) -> str | None:
        """Value of the first attribute called ``name`` (lower-case), or ``None``."""
        for n, v in self.attributes:
            if n == name:
                return v
        return None

    def all(self, name: str) -> list[str]:
        """Values of every attribute called ``name`` (lower-case), in file order."""
        return [v for n, v in self.attributes if n == name]


def text_stream(raw: IO[bytes]) -> IO[str]:
    """A text stream over a binary one, decompressing it when it starts with the gzip magic
    bytes.  ``raw`` must support ``peek`` (e.g. :class:`io.BufferedReader`) or ``seek``."""
    if hasattr(raw, "peek"):
        magic = raw.peek(2)[:2]
    else:
        magic = raw.read(2)
        raw.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if magic == _GZIP_MAGIC else raw
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=None)


def open_dump(path: str | Path) -> IO[str]:
    """Open an RPSL dump for reading as text, gzip-compressed or not (detected by content).

    Raises:
        OSError: the file cannot be read.
    """
    return text_stream(open(path, "rb"))


def _clean(value: str) -> str:
    if "#" in value:
        value = _EOL_COMMENT_RE.sub("", value)
    return value.strip()


def iter_objects(lines: Iterable[str], keep: frozenset[str] | set[str] | None = None,
                 classes: frozenset[str] | set[str] | None = None) -> Iterator[RpslObject]:
    """Yield the RPSL objects of a text stream, one at a time.

    Args:
        lines: the dump's lines (a text file object works).
        keep: if given, only these attribute names (lower-case) are kept, besides the first
            (class) attribute, which is always kept.  Saves time and memory on large dumps.
        classes: if given, objects of other classes are skipped without building them.

    Yields:
        :class:`RpslObject` in file order.  A line that is neither an attribute, a continuation,
        a comment nor blank (damaged data) is skipped, as the RIRs' own tools do.
    """
    attrs: list[tuple[str, str]] = []
    start = 0
    skipping = False
    keeping_last = False  # whether the last attribute line was kept (for its continuations)
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            if attrs:
                yield RpslObject(attrs, start)
            attrs, skipping, keeping_last = [], False, False
            continue
        c = line[0]
        if c in "%#":
            continue
        if skipping:
            continue
        if c in " \t+":
            if attrs and keeping_last:
                extra = _clean(line[1:])
                if extra:
                    name, value = attrs[-1]
                    attrs[-1] = (name, f"{value} {extra}" if value else extra)
            continue
        m = _ATTR_RE.match(line)
        if m is None:
            continue
        name = m.group(1).lower()
        if not attrs:
            if classes is not None and name not in classes:
                skipping = True
                continue
            start = lineno
            attrs.append((name, _clean(m.group(2))))
            keeping_last = True
        elif keep is None or name in keep:
            attrs.append((name, _clean(m.group(2))))
            keeping_last = True
        else:
            keeping_last = False
    if attrs:
        yield RpslObject(attrs, start)
