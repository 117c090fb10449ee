"""herald.tomlfile reads every document exactly as the standard library's tomllib does."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from herald import tomlfile

ROOT = Path(__file__).resolve().parents[1]

keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
scalars = (st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
           | st.integers(-(2**63), 2**63 - 1) | st.booleans()
           | st.floats(allow_nan=False) | st.dates()
           | st.datetimes(timezones=st.just(dt.timezone.utc)).map(lambda d: d.replace(microsecond=0)))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(keys, inner, max_size=5), max_leaves=20)
documents = st.dictionaries(keys, values, max_size=8)


def _plain(value):
    """Datetimes compared by instant and offset (the two parsers name UTC's tzinfo differently)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return (value.isoformat(), value.utcoffset())
    return value


@given(documents)
def test_any_document_reads_as_tomllib_reads_it(doc):
    text = tomli_w.dumps(doc)
    got = tomlfile.loads(text)
    assert _plain(got) == _plain(tomllib.loads(text)) == _plain(doc)


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in [
    *ROOT.glob("examples/*.toml"), *ROOT.glob("herald/sources/mappings/*.toml"),
    *ROOT.glob("tests/data/**/*.toml")]))
def test_the_shipped_files_read_as_tomllib_reads_them(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    assert tomlfile.loads(text) == tomllib.loads(text)


@pytest.mark.parametrize("text", [
    "a = ",
    "a = 1\na = 2",
    "[x]\n[x]",
    'a = "\\q"',
    "[[recipients]]\nname = 'x'\ncidrs = ['10.0.0.0/8',\n",
    "a = 1 b = 2",
])
def test_a_bad_document_raises_tomllibs_error_with_its_line_and_column(text):
    with pytest.raises(tomllib.TOMLDecodeError) as expected:
        tomllib.loads(text)
    with pytest.raises(tomlfile.TOMLDecodeError) as got:
        tomlfile.loads(text)
    assert str(got.value) == str(expected.value)
