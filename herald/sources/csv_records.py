"""Record boundaries of RFC 4180 CSV files: segments for the fast reader, physical lines of bad
records, and the row-exact fallback reader.

Physical lines end with ``\\r\\n``, ``\\n`` or a lone ``\\r`` (old Mac files), as Arrow's CSV
reader and Python's universal newlines read them.  A record ends at a line end outside double
quotes (RFC 4180 section 2.6: a quoted field may hold line ends; ``""`` inside a quoted field is one
quote, section 2.7, and leaves the quote parity unchanged).

Three tools, from cheap to slow:

- :class:`SegmentReader` cuts a file into byte segments of whole records (about ``size`` bytes each)
  that :mod:`pyarrow.csv` parses one at a time: the fast path.  Finding a cut costs one
  ``bytes.count`` over the segment and a numpy scan of its tail.
- :class:`RecordIndex` finds every record of one segment with its first physical line (numpy, over
  the segment's bytes); used only for segments with a bad row.
- :func:`exact_records` reads one segment record by record with Python's :mod:`csv` module,
  line-aware: the fallback for a segment that Arrow cannot read (bytes that are not UTF-8, NUL bytes,
  a record larger than Arrow's block, wrong field counts, an unterminated quote).  It is about ten
  times slower than the fast path, and is paid only for the small parts of segments that need it
  (:func:`herald.sources.shadowserver_csv.iter_file` halves a failing segment first).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

#: A record larger than this is quarantined by the row-exact reader (``record larger than N bytes``).
MAX_RECORD_BYTES = 64 << 20
#: A quoted field may span at most this many physical lines; beyond that its opening quote is taken
#: as unterminated (bounds the fallback's work on a file with a stray quote).
MAX_RECORD_LINES = 10_000
#: Bytes of ``raw`` kept in the quarantine for a record too large to read.
RAW_PREVIEW_BYTES = 4096

_LINE_END = re.compile(rb"\r\n|\n|\r")


def line_ends(data: bytes | np.ndarray, eof: bool = True) -> np.ndarray:
    """``int64[K]`` positions of the last byte of every line end in ``data`` (``\\n``, or ``\\r`` not
    followed by ``\\n``).  Without ``eof``, a ``\\r`` as the last byte (its ``\\n`` may follow in
    the next read) does not count."""
    a = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    cr = a == 0x0D
    lone_cr = cr.copy()
    lone_cr[:-1] &= a[1:] != 0x0A
    if not eof and len(a):
        lone_cr[-1] = False
    return np.flatnonzero((a == 0x0A) | lone_cr)


def count_lines(data: bytes) -> int:
    """Number of physical line ends in ``data`` (``\\r\\n``, ``\\n`` or a lone ``\\r``)."""
    n = count_byte(data, 0x0A)
    if data.find(b"\r") >= 0:
        n += data.count(b"\r") - data.count(b"\r\n")
    return n


def count_byte(data: bytes, byte: int, end: int | None = None) -> int:
    """Occurrences of ``byte`` in ``data[:end]`` (numpy: about ten times faster than
    ``bytes.count``)."""
    a = np.frombuffer(data, dtype=np.uint8)
    return int(np.count_nonzero((a if end is None else a[:end]) == byte))


def last_record_end(buf: bytes, eof: bool, tail: int = 1 << 20) -> int:
    """Offset just after the last line end of ``buf`` that is outside quotes (the quote parity
    counted from ``buf[0]``, which must start a record); 0 when there is none."""
    start = max(0, len(buf) - tail)
    while True:
        before = count_byte(buf, 0x22, start)
        t = np.frombuffer(buf, dtype=np.uint8)[start:]
        ends = line_ends(t, eof)
        if len(ends):
            quotes = np.flatnonzero(t == 0x22)
            outside = ((before + np.searchsorted(quotes, ends)) & 1) == 0
            ok = ends[outside]
            if len(ok):
                return start + int(ok[-1]) + 1
        if start == 0:
            return 0
        start = max(0, start - 2 * (len(buf) - start))


def last_line_end(buf: bytes, eof: bool) -> int:
    """Offset just after the last physical line end of ``buf`` (quotes ignored); 0 when none."""
    ends = line_ends(buf, eof)
    return int(ends[-1]) + 1 if len(ends) else 0


@dataclass
class Segment:
    """Whole records of a file.

    Attributes:
        offset: byte offset of ``data`` in the file.
        first_line: physical line (1-based) of ``data[0]``.
        data: the bytes.
        broken: no record end outside quotes was found within the reader's ``size`` (the
            segment was cut at a physical line end), or the file ends inside quotes: the segment
            must be read with :func:`exact_records`.
        final: the segment ends the file.
    """

    offset: int
    first_line: int
    data: bytes
    broken: bool = False
    final: bool = False


class SegmentReader:
    """Cut the rest of an open file (positioned at ``offset``, the start of a record on physical
    line ``first_line``) into segments of whole records of about ``size`` bytes (more when one
    record is larger); iterate to get the :class:`Segment` objects.  Memory: one segment plus one
    read.

    :meth:`push_back` returns the unread end of the last segment (after the row-exact reader has
    resolved a stray quote): it is cut again, with the quote parity counted from its start.
    """

    def __init__(self, fh: BinaryIO, offset: int, first_line: int, size: int) -> None:
        self._fh, self._offset, self._line = fh, offset, first_line
        self._size = size
        self._pushed: tuple[bytes, int, int] | None = None

    def push_back(self, data: bytes, offset: int, first_line: int) -> None:
        """Read ``data`` (the end of the last segment, starting at a record on ``first_line``,
        file offset ``offset``) again before the rest of the file."""
        self._pushed = (data, offset, first_line)

    def __iter__(self) -> Iterator[Segment]:
        fh, size = self._fh, self._size
        buf = b""
        eof = False
        while True:
            want = size
            broken = False
            while True:
                if not eof and len(buf) < want:
                    chunk = fh.read(want - len(buf))
                    if not chunk:
                        eof = True
                    buf = chunk if not buf else buf + chunk
                if eof:
                    cut = len(buf)
                    # A quote still open at the end of the file (Arrow would read it to the end).
                    broken = bool(count_byte(buf, 0x22) & 1)
                    break
                cut = last_record_end(buf, eof)
                if cut:
                    break
                if len(buf) >= size:
                    # No record ends in a whole window: a stray quote (or one record larger than
                    # the window, which the row-exact reader carries on into the next segments).
                    cut = last_line_end(buf, eof)
                    if cut:
                        broken = True
                        break
                want = max(len(buf) * 2, size)
            if not cut:
                return
            seg, buf = buf[:cut], buf[cut:]
            yield Segment(self._offset, self._line, seg, broken, eof and not buf)
            if self._pushed is not None:
                data, self._offset, self._line = self._pushed
                self._pushed = None
                buf = data + buf
            else:
                self._offset += cut
                self._line += count_lines(seg)


def iter_segments(fh: BinaryIO, offset: int, first_line: int, size: int) -> Iterator[Segment]:
    """The segments of :class:`SegmentReader` (without pushing back)."""
    return iter(SegmentReader(fh, offset, first_line, size))


def header_end(path: str) -> tuple[int, int]:
    """``(offset, line)``: where the data records of the file start (just after the header
    record's line end; a UTF-8 BOM belongs to the header record) and the physical line there."""
    with open(path, "rb") as fh:
        for seg in iter_segments(fh, 0, 1, 1 << 16):
            idx = RecordIndex(seg.data, seg.first_line)
            if not len(idx):
                continue
            p = int(idx.ends[0])
            d = seg.data
            p += 2 if d[p:p + 2] == b"\r\n" else (1 if d[p:p + 1] in (b"\n", b"\r") else 0)
            return seg.offset + p, seg.first_line + count_lines(d[:p])
    return 0, 1


class RecordIndex:
    """Every non-blank CSV record of a segment: byte span, first physical line, field count.

    Vectorized (numpy over the bytes), quote-aware as the module docstring says.  Blank records
    (empty, or only ``\\r``) are skipped, as the CSV readers skip them.

    Attributes:
        starts, ends: ``int64[R]`` byte span of each record in ``data`` (``ends`` excludes the
            line end).
        lines: ``int64[R]`` physical line of each record's first byte.
        fields: ``int64[R]`` number of fields (commas outside quotes + 1).
    """

    def __init__(self, data: bytes, first_line: int) -> None:
        self._data = data
        a = np.frombuffer(data, dtype=np.uint8)
        # Positions only, never a per-byte running count: a byte is inside quotes when an odd
        # number of quotes stand at or before it (searchsorted over the quote positions).  Three
        # int64 cumulative sums over every byte took 1.3 s of a generated 1M-event day's 3.0 s
        # parse (bench/README.md, "Floor ratio").
        quotes = np.flatnonzero(a == 0x22) if data.find(b'"') >= 0 else np.zeros(0, np.int64)
        all_le = np.flatnonzero(a == 0x0A) if data.find(b"\r") < 0 else line_ends(a)
        le = all_le
        commas = np.flatnonzero(a == 0x2C)
        if len(quotes):
            le = le[(np.searchsorted(quotes, le, side="right") & 1) == 0]
            commas = commas[(np.searchsorted(quotes, commas, side="right") & 1) == 0]
        ends = le.astype(np.int64)
        if len(a) and (not len(ends) or ends[-1] != len(a) - 1):
            ends = np.append(ends, len(a))
        starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64) if len(ends) else np.zeros(0, np.int64)
        # ``ends`` point at the line end's last byte: the content stops before "\r\n" / "\n" / "\r".
        content_end = ends.copy()
        crlf = (content_end > starts) & (content_end < len(a))
        crlf_idx = np.flatnonzero(crlf)
        crlf_idx = crlf_idx[(a[content_end[crlf_idx]] == 0x0A) & (a[content_end[crlf_idx] - 1] == 0x0D)]
        content_end[crlf_idx] -= 1
        # physical lines: every line end counts, inside quotes too
        lines = np.searchsorted(all_le, starts, side="left").astype(np.int64) + first_line
        fields = (np.searchsorted(commas, content_end, side="left")
                  - np.searchsorted(commas, starts, side="left") + 1).astype(np.int64)
        keep = content_end > starts
        self.starts = starts[keep]
        self.ends = content_end[keep]
        self.lines = lines[keep]
        self.fields = fields[keep]

    def __len__(self) -> int:
        return len(self.starts)

    def raw(self, i: int) -> str:
        """Text of record ``i`` without its line end (bytes that are not UTF-8 escaped as
        ``\\xNN``)."""
        return self._data[self.starts[i]:self.ends[i]].decode("utf-8", "backslashreplace")


@dataclass
class ExactRecord:
    """One record read by :func:`exact_records`.

    Attributes:
        line: physical line (1-based) of its first byte.
        fields: its fields, or ``None`` when it could not be read (then ``reason`` says why).
        raw: its text (bytes that are not UTF-8 escaped as ``\\xNN``; truncated to
            :data:`RAW_PREVIEW_BYTES` for a record too large to read).
        reason, field, value: why it could not be read, the column (or ``None``) and the value.
    """

    line: int
    fields: list[str] | None
    raw: str
    reason: str | None = None
    field: str | None = None
    value: str | None = None


def _split(text: str) -> list[str]:
    """Fields of one record's text (Python's :mod:`csv`, RFC 4180 quoting, not strict: like Arrow,
    text after a closing quote is kept)."""
    return next(csv.reader(io.StringIO(text, newline="")), [])


def _bad_quote_field(text: str) -> int:
    """Index of the first field of one line whose quoting breaks RFC 4180 section 2 (a quoted
    field that does not close, or closes before other text, or a quote in an unquoted field);
    -1 when there is none."""
    k, i, n = 0, 0, len(text)
    while True:
        if i < n and text[i] == '"':
            i += 1
            while True:
                j = text.find('"', i)
                if j < 0:
                    return k
                if j + 1 < n and text[j + 1] == '"':
                    i = j + 2
                    continue
                i = j + 1
                break
            if i < n and text[i] != ",":
                return k
        else:
            j = text.find(",", i)
            end = n if j < 0 else j
            if text.find('"', i, end) >= 0:
                return k
            i = end
        if i >= n:
            return -1
        k += 1
        i += 1


def _strict_ok(text: str) -> bool:
    """The record's text follows RFC 4180 quoting strictly (Python's ``csv`` with ``strict``)."""
    try:
        next(csv.reader(io.StringIO(text, newline=""), strict=True), [])
        return True
    except csv.Error:
        return False


def _looks_like_record(line: bytes, ncols: int) -> bool:
    """A physical line that is a whole record on its own: balanced quotes and ``ncols`` fields."""
    if line.count(b'"') & 1:
        return False
    try:
        return len(_split(line.decode("utf-8", "replace"))) == ncols
    except csv.Error:
        return False


def exact_records(data: bytes, first_line: int, header: list[str],
                  max_record: int = MAX_RECORD_BYTES, final: bool = True,
                  tail: list | None = None, resync: list | None = None) -> Iterator[ExactRecord]:
    """Read a segment record by record, row-exact: the slow fallback (see the module docstring).

    Rules (``docs/input.md``, "Messy files"):

    - a quoted field continues over physical lines until its closing quote, but not over a line
      that is a whole record on its own (balanced quotes, as many fields as the header), nor over
      more than :data:`MAX_RECORD_LINES` lines, nor when the joined lines have the wrong number of
      fields and break RFC 4180 quoting (a closing quote followed by other text): then only the
      opening line is a bad record
      (``unterminated quoted field``) and reading goes on with the next line, so that a stray quote
      never swallows the rows after it;
    - a record that is not UTF-8: bad, the field holding the first bad byte is named;
    - a record with a NUL byte: bad, the field is named;
    - a record larger than ``max_record`` bytes: bad (``record larger than N bytes``).

    Field counts are not checked here (the caller compares them with the header).

    Args:
        data: records (a :class:`Segment`'s bytes; after a stray quote a segment may end inside a
            quoted field, see ``final``).
        first_line: physical line of ``data[0]``.
        header: the file's column names (their number decides whether a line is a whole record).
        final: ``data`` ends the file.  When it does not and the last record's quoted field is
            still open at the end of ``data``, that record is not read: ``(offset, line)`` of its
            start is appended to ``tail`` so that the caller reads it again with the next segment.
        resync: when given, reading stops after the first unterminated quote: ``(offset, line)``
            of the next line is appended, so that the caller cuts the rest again (the segment's end
            was found with the quote parity that the stray quote had flipped) and reads it fast.

    Yields:
        one :class:`ExactRecord` per non-blank record, in file order.
    """
    ncols = len(header)
    lines = _Lines(data)  # (start, content end) of each physical line, split as needed
    i = 0
    csv.field_size_limit(max(csv.field_size_limit(), max_record))
    while lines.has(i):
        s, e = lines[i]
        if s == e or data[s:e] == b"\r":
            i += 1
            continue
        j = i
        quotes = data.count(b'"', s, e)
        while quotes & 1 and lines.has(j + 1) and j - i < MAX_RECORD_LINES:
            s2, e2 = lines[j + 1]
            if _looks_like_record(data[s2:e2], ncols):
                break
            j += 1
            quotes += data.count(b'"', s2, e2)
        line = first_line + i
        if quotes & 1 and not lines.has(j + 1) and not final and tail is not None and j - i < MAX_RECORD_LINES:
            tail.append((s, line))
            return
        rec = None
        if not quotes & 1:
            rec = _read_record(data[s:lines[j][1]], line, header, max_record)
            if j > i and rec.fields is not None and len(rec.fields) != ncols and not _strict_ok(rec.raw):
                rec = None  # lines joined by a quote that break RFC 4180 quoting: the quote is stray
        if rec is None:
            text = data[s:e].decode("utf-8", "backslashreplace")
            k = _bad_quote_field(text)
            fld = header[k] if 0 <= k < ncols else None
            yield ExactRecord(line, None, text, "unterminated quoted field (RFC 4180 section 2.7)", fld)
            i += 1
            if resync is not None and lines.has(i):
                resync.append((lines[i][0], first_line + i))
                return
            continue
        yield rec
        i = j + 1


class _Lines:
    """The physical lines of ``data`` as ``(start, content end)`` pairs, split lazily (the
    row-exact reader may stop after a few lines of a large segment)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._it = _LINE_END.finditer(data)
        self._lines: list[tuple[int, int]] = []
        self._pos = 0
        self._done = False

    def has(self, k: int) -> bool:
        """Line ``k`` exists (splits up to it)."""
        while len(self._lines) <= k and not self._done:
            m = next(self._it, None)
            if m is None:
                self._done = True
                if self._pos < len(self._data):
                    self._lines.append((self._pos, len(self._data)))
            else:
                self._lines.append((self._pos, m.start()))
                self._pos = m.end()
        return k < len(self._lines)

    def __getitem__(self, k: int) -> tuple[int, int]:
        self.has(k)
        return self._lines[k]


def _read_record(rec: bytes, line: int, header: list[str], max_record: int) -> ExactRecord:
    """One record's bytes decoded (strict UTF-8) and split into fields."""
    if len(rec) > max_record:
        return ExactRecord(line, None, rec[:RAW_PREVIEW_BYTES].decode("utf-8", "backslashreplace"),
                           f"record larger than {max_record} bytes")
    try:
        text = rec.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = rec.decode("utf-8", "backslashreplace")
        fields = _split(rec.decode("utf-8", "surrogateescape"))
        k = next((k for k, f in enumerate(fields) if any("\udc80" <= ch <= "\udcff" for ch in f)), -1)
        value = fields[k].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") if k >= 0 else None
        where = line + count_lines(rec[:exc.start])
        return ExactRecord(line, None, raw, f"not UTF-8: byte 0x{rec[exc.start]:02x} on line {where}",
                           header[k] if 0 <= k < len(header) else None, value)
    try:
        fields = _split(text)
    except csv.Error as exc:
        return ExactRecord(line, None, text, f"malformed CSV record: {exc}")
    if "\x00" in text:
        k = next((k for k, f in enumerate(fields) if "\x00" in f), -1)
        value = fields[k].replace("\x00", "\\x00") if k >= 0 else None
        return ExactRecord(line, None, text.replace("\x00", "\\x00"), "NUL byte in field",
                           header[k] if 0 <= k < len(header) else None, value)
    return ExactRecord(line, fields, text)
