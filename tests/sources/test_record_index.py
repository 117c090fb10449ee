"""herald.sources.csv_records.RecordIndex (the vectorized record splitter of the CSV parsers)
against a naive byte-by-byte reference of the same rules: records end at a line end outside
quotes (RFC 4180 section 2; ``\\r\\n``, ``\\n`` or a lone ``\\r``), blank records are skipped,
fields are the commas outside quotes plus one, lines count every physical line end."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.sources.csv_records import RecordIndex


def naive(d: bytes, first_line: int) -> list[tuple[int, int, int, int]]:
    """``[(start, end, line, fields)]`` of the non-blank records of ``d``, one byte at a time."""
    out = []
    inside, line, start, start_line, commas = False, first_line, 0, first_line, 0
    for i, c in enumerate(d):
        if c == 0x22:
            inside = not inside
        elif c == 0x2C and not inside:
            commas += 1
        is_le = c == 0x0A or (c == 0x0D and (i + 1 == len(d) or d[i + 1] != 0x0A))
        if not is_le:
            continue
        line += 1
        if inside:
            continue
        end = i - 1 if c == 0x0A and i > start and d[i - 1] == 0x0D else i
        if end > start:
            out.append((start, end, start_line, commas + 1))
        start, start_line, commas = i + 1, line, 0
    if start < len(d):
        out.append((start, len(d), start_line, commas + 1))
    return out


@settings(max_examples=3000)
@given(st.lists(st.sampled_from([b'"', b",", b"\n", b"\r", b"a", b"\r\n", b'""', b"\xff"]),
                max_size=80), st.integers(1, 9))
def test_record_index_matches_the_byte_by_byte_reference(parts, first_line):
    d = b"".join(parts)
    idx = RecordIndex(d, first_line)
    got = list(zip(idx.starts.tolist(), idx.ends.tolist(), idx.lines.tolist(), idx.fields.tolist()))
    assert got == naive(d, first_line)
    for arr in (idx.starts, idx.ends, idx.lines, idx.fields):
        assert arr.dtype == np.int64


def test_a_quoted_line_end_and_comma_stay_in_their_record():
    d = b'a,"b\nc,d",e\r\nf,g\rh\n\n'
    idx = RecordIndex(d, 5)
    assert [idx.raw(i) for i in range(len(idx))] == ['a,"b\nc,d",e', "f,g", "h"]
    assert idx.lines.tolist() == [5, 7, 8] and idx.fields.tolist() == [3, 2, 1]
