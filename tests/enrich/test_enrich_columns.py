"""herald.enrich column helpers against Arrow's own kernels on random columns: _replace (strings
by take) equals pc.replace_with_mask, _empty of integer columns (read from the buffers) equals
null-or-zero."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings, strategies as st

from herald.enrich import _empty, _replace

HSET = settings(max_examples=200, deadline=None)


@HSET
@given(st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=3)), st.booleans(),
                          st.one_of(st.none(), st.sampled_from(["AT", "", "ZZ"]))), max_size=30),
       st.integers(0, 3), st.sampled_from([pa.string(), pa.large_string()]))
def test_replace_equals_replace_with_mask(rows, cut, typ):
    old = pa.array([r[0] for r in rows], typ).slice(min(cut, len(rows)))
    rows = rows[min(cut, len(rows)):]
    mask = np.array([r[1] for r in rows], dtype=bool)
    values = pa.array([r[2] for r in rows if r[1]], typ)
    got = _replace(old, mask, values)
    assert got.type == old.type
    assert got.equals(pc.replace_with_mask(old, pa.array(mask, pa.bool_()), values))


@HSET
@given(st.lists(st.one_of(st.none(), st.integers(-3, 3), st.integers(2**31, 2**40)), max_size=30),
       st.integers(0, 3), st.sampled_from([pa.int64(), pa.int32(), pa.uint32()]))
def test_empty_asn_is_null_or_zero(values, cut, typ):
    def fits(v):
        return v is None or (0 <= v < 2**32 if typ == pa.uint32() else -2**31 <= v < 2**31 or typ == pa.int64())
    arr = pa.array([v for v in values if fits(v)], typ)
    arr = arr.slice(min(cut, len(arr)))
    assert _empty(arr, "asn").tolist() == [v is None or v == 0 for v in arr.to_pylist()]
