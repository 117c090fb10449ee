"""herald.fsutil: hashing a day's inputs on threads gives each file's own SHA-256, in order."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.fsutil import file_sha256, files_sha256


@settings(max_examples=25)
@given(st.lists(st.binary(max_size=3 << 20), max_size=6))
def test_files_sha256_is_each_files_digest_in_order(tmp_path_factory, contents):
    d = tmp_path_factory.mktemp("h")
    paths = []
    for i, data in enumerate(contents):
        p = d / f"{i}.csv"
        p.write_bytes(data)
        paths.append(p)
    assert files_sha256(paths) == [hashlib.sha256(c).hexdigest() for c in contents]
    assert files_sha256(paths, threads=1) == [file_sha256(p) for p in paths]


def test_a_missing_file_raises(tmp_path):
    (tmp_path / "a").write_bytes(b"x")
    with pytest.raises(FileNotFoundError):
        files_sha256([tmp_path / "a", tmp_path / "missing"])
