"""herald.packsort: the packed sort agrees with numpy's stable argsort."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from herald.packsort import sort_with_positions


@given(st.lists(st.integers(0, 2**32 - 1), max_size=300), st.sampled_from([np.uint32, np.int64]))
def test_sorted_keys_and_positions_are_a_stable_argsort(values, dtype):
    keys = np.array(values, dtype=dtype)
    got, pos = sort_with_positions(keys)
    order = np.argsort(keys, kind="stable")
    assert got.dtype == np.uint64 and pos.dtype == np.intp
    assert got.tolist() == keys[order].tolist()
    assert pos.tolist() == order.tolist()


def test_ties_keep_their_order_at_the_ends_of_the_range():
    keys = np.array([2**32 - 1, 0, 2**32 - 1, 0, 7], dtype=np.int64)
    got, pos = sort_with_positions(keys)
    assert got.tolist() == [0, 0, 7, 2**32 - 1, 2**32 - 1]
    assert pos.tolist() == [1, 3, 4, 0, 2]
