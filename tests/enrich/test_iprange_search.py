"""herald.enrich.iprange helpers against plain references: unique_inverse (packed-sort path and
searchsorted path) and the two search directions of a sorted lookup."""

from __future__ import annotations

import bisect

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from herald.enrich import iprange

HSET = settings(max_examples=150, deadline=None)


@HSET
@given(st.lists(st.one_of(st.integers(0, 20), st.integers(0, 2**32 - 1), st.integers(2**32, 2**40),
                          st.integers(-5, -1)), max_size=60),
       st.sampled_from([np.int64, np.uint64, np.int32, np.uint32]))
def test_unique_inverse_equals_numpy(values, dtype):
    info = np.iinfo(dtype)
    arr = np.array([v for v in values if info.min <= v <= info.max], dtype=dtype)
    u, inv = iprange.unique_inverse(arr)
    ref_u, ref_inv = np.unique(arr, return_inverse=True)
    assert u.dtype == arr.dtype and inv.dtype == np.int64
    assert np.array_equal(u, ref_u) and np.array_equal(inv, ref_inv.ravel())


@pytest.mark.parametrize("keys_into_bounds", [True, False])
@HSET
@given(st.lists(st.integers(0, 2**32 - 1), max_size=30, unique=True),
       st.lists(st.integers(0, 2**32 - 1), max_size=30))
def test_sorted_lookup_both_directions(keys_into_bounds, bounds, keys):
    b = np.array(sorted(bounds), dtype=np.uint64)
    k = np.array(sorted(keys), dtype=np.uint64)
    values = np.arange(-1, len(b), dtype=np.int64) * 7
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(iprange, "_keys_into_bounds", lambda n, b: keys_into_bounds)
        got = iprange._sorted_lookup(k, b, values)
    ref = [int(values[bisect.bisect_right(sorted(bounds), x)]) for x in sorted(keys)]
    assert got.tolist() == ref


@HSET
@given(st.lists(st.one_of(st.integers(0, 20), st.integers(-2**62, 2**62)), max_size=60))
def test_factorize_sorted_equals_numpy(values):
    arr = np.array(values, dtype=np.int64)
    u, inv = iprange._factorize_sorted(arr)
    ref_u, ref_inv = np.unique(arr, return_inverse=True)
    assert u.dtype == np.int64 and inv.dtype == np.int64
    assert np.array_equal(u, ref_u) and np.array_equal(inv, ref_inv.ravel())
