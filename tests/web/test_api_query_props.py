"""Property tests: whatever a caller puts in ``reports/query``, no answer contains an address,
host name or URL outside the caller's own rows, and the server never fails (no 5xx).

Callers are the example recipients (network owners by ASN/CIDR, national CERTs, the
law-enforcement partner).  Hypothesis draws every column of every stored type, values of every
JSON kind (integers including 10**400, floats, booleans, null, strings, lists, objects, stored
addresses/host names/URLs of other recipients, CIDRs), facets and sorts on every column, types
(repeated, unknown), dates and paging.  "Foreign" values come from the Parquet store minus the
caller's own report files (see ``tests/web/test_api_query.py``).
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.web.testing import EXAMPLE_DAY
from tests.web.test_api_query import NAMES, call, leaked, make_world, own_scope

HC = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("queryprops")
    w = make_world(root, f"sqlite:///{root / 'herald.db'}")
    w.types = sorted(w.columns)
    w.all_columns = sorted({c for cols in w.columns.values() for c in cols})
    w.sensitive_list = sorted(w.sensitive)
    nets = set()
    for v in w.sensitive_list:
        try:
            a = ipaddress.ip_address(v)
        except ValueError:
            continue
        for plen in ((8, 16, 24, 32) if a.version == 4 else (16, 32, 48, 128)):
            nets.add(str(ipaddress.ip_network(f"{v}/{plen}", strict=False)))
    w.nets = sorted(nets)
    yield w
    w.dep.db.dispose()


def json_values(w):
    """Any JSON value, with the stored data's addresses, host names and URLs mixed in."""
    scalars = st.one_of(
        st.integers(), st.integers(-(2 ** 64), 2 ** 64), st.sampled_from(
            [10 ** 400, -10 ** 400, 2 ** 63, 2 ** 63 - 1, -(2 ** 63), -(2 ** 63) - 1, 0, 53, 80]),
        st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
        st.text(max_size=20), st.sampled_from(w.sensitive_list), st.sampled_from(w.nets),
        st.sampled_from(["2026-11-30 00:00:00", "2026-11-30T12:00:00Z", "2026-11-30", "AT",
                         "AS25255", "25255", "", " ", "%", "' OR 1=1 --", "\x00", "::",
                         "0.0.0.0/0", "::/0", "5.12.0.0/14", "2603:8080::/32"]))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
        max_leaves=8)


def scopes(w, caller):
    """The caller's own scope filters mostly; sometimes another's or garbage."""
    own = own_scope(w, caller)
    others = [own_scope(w, n) for n in NAMES if n != caller]
    return st.one_of(st.just(own), st.just(own), st.just(own), st.sampled_from(others),
                     st.fixed_dictionaries({}, optional={
                         "ip": json_values(w), "asn": json_values(w), "geo": json_values(w)}))


def fields(w):
    return st.one_of(st.sampled_from(w.all_columns), st.sampled_from(
        ["type", "asn", "geo", "ip", "src_", "no_such_column", "Type", "ip;drop", "a" * 70]))


def check(w, caller, body):
    r = call(w, caller, body)
    assert r.status_code < 500, (body, r.text)
    bad = leaked(w, caller, r)
    assert not bad, (body, r.status_code, sorted(bad)[:3], r.text[:300])
    if r.status_code == 200 and isinstance(r.json(), list):
        for row in r.json():
            t = row.pop("type")
            key = (t, tuple(sorted((k, "" if v is None else str(v)) for k, v in row.items())))
            assert key in w.rows[caller], ("a row not in the caller's reports", body)
    return r


@settings(max_examples=300, deadline=None, suppress_health_check=HC)
@given(data=st.data())
def test_filters_of_every_kind_never_leak(world, data):
    """Filters on any column with values of any JSON kind."""
    w = world
    caller = data.draw(st.sampled_from(NAMES), label="caller")
    query = dict(data.draw(scopes(w, caller), label="scope"))
    query.update(data.draw(st.dictionaries(fields(w), json_values(w), max_size=3),
                           label="filters"))
    body = {"query": query, "date": EXAMPLE_DAY, "limit": 10000}
    if data.draw(st.booleans()):
        body["type"] = data.draw(st.sampled_from(w.types))
    check(w, caller, body)


@settings(max_examples=300, deadline=None, suppress_health_check=HC)
@given(data=st.data())
def test_filters_with_stored_values_never_leak(world, data):
    """Equality filters with values taken from the store (anyone's), on matching columns: an
    answer is the same kind whoever owns the value (no oracle), and never shows it."""
    w = world
    caller = data.draw(st.sampled_from(NAMES), label="caller")
    t = data.draw(st.sampled_from(w.types), label="type")
    col = data.draw(st.sampled_from(sorted(w.columns[t])), label="column")
    value = data.draw(st.one_of(st.sampled_from(w.sensitive_list), st.sampled_from(w.nets),
                                st.integers(-5, 70000)), label="value")
    body = {"query": dict(own_scope(w, caller), **{col: value}), "type": t,
            "date": EXAMPLE_DAY, "limit": 10000}
    r = check(w, caller, body)
    # ip/asn/geo are the scope fields: another's value is a 403
    assert r.status_code in ((200, 400, 403) if col in ("ip", "asn", "geo") else (200, 400)), r.text
    if r.status_code == 400:
        assert col in r.json()["error"]


@settings(max_examples=250, deadline=None, suppress_health_check=HC)
@given(data=st.data())
def test_facets_sorts_types_dates_and_paging_never_leak(world, data):
    """Facets and sorts on every column, repeated/unknown types, dates, limits and pages."""
    w = world
    caller = data.draw(st.sampled_from(NAMES), label="caller")
    body = {"query": dict(data.draw(scopes(w, caller), label="scope"))}
    if data.draw(st.booleans()):
        body["query"].update(data.draw(st.dictionaries(fields(w), json_values(w), max_size=1)))
    kind = data.draw(st.sampled_from(["facet", "sort", "both", "none"]))
    if kind in ("facet", "both"):
        body["facet"] = data.draw(st.one_of(fields(w), json_values(w)), label="facet")
    if kind in ("sort", "both"):
        body["sort"] = data.draw(st.one_of(
            fields(w), fields(w).map(lambda f: "-" + f), fields(w).map(lambda f: f + " desc"),
            json_values(w)), label="sort")
    body["type"] = data.draw(st.one_of(
        st.none(), st.sampled_from(w.types), st.lists(st.sampled_from(w.types), max_size=4),
        st.sampled_from(w.types).map(lambda t: f"{t},{t}"), json_values(w)), label="type")
    body["date"] = data.draw(st.one_of(st.just(EXAMPLE_DAY), st.sampled_from(
        ["2026-11-29:2026-11-30", "2026-11-01:2026-12-01", "2025-11-30:2026-11-30",
         "2026-11-30:2026-11-29", "2026-13-01", ""]), json_values(w)), label="date")
    body["limit"] = data.draw(st.one_of(st.integers(1, 10000), st.sampled_from(
        [0, -1, 10001, 10 ** 400, True, 1.5, "10", None])), label="limit")
    body["page"] = data.draw(st.one_of(st.integers(1, 5), st.sampled_from(
        [0, -1, 10 ** 400, 10 ** 12, False, "2", None, 2.0])), label="page")
    body = {k: v for k, v in body.items() if v is not None}
    check(w, caller, body)


@settings(max_examples=400, deadline=None)
@given(value=st.recursive(st.one_of(
    st.integers(), st.sampled_from([10 ** 400, 2 ** 63, -(2 ** 63) - 1, 2 ** 63 - 1, -(2 ** 63)]),
    st.floats(), st.booleans(), st.none(), st.text(max_size=30),
    st.integers().map(str)), lambda i: st.lists(i, max_size=3) | st.dictionaries(
        st.text(max_size=3), i, max_size=2), max_leaves=5),
    kind=st.sampled_from(["int", "timestamp", "ip", "string"]))
def test_convert_values_types_or_refuses_by_field(value, kind):
    """Each kind of column accepts exactly its values (converted), else a 400 naming the field
    and never repeating the value."""
    import pyarrow as pa

    from herald.schema.registry import TIMESTAMP_TYPE
    from herald.web.catalog import RequestError
    from herald.web.query import convert_values

    arrow = {"int": pa.int64(), "timestamp": TIMESTAMP_TYPE, "ip": None,
             "string": pa.string()}[kind]
    values = value if isinstance(value, list) else [value]

    def refusal(vals):
        try:
            convert_values("the_field", arrow, vals)
        except RequestError as exc:
            return exc
        return None

    # the only possible messages: fixed texts, whatever the value
    fixed = {str(refusal(v)) for v in ([None], [], [0] * 1001)}
    exc = refusal(values)
    if exc is not None:
        assert exc.status == 400 and "the_field" in str(exc) and str(exc) in fixed
        return
    out = convert_values("the_field", arrow, values)
    assert len(out) == len(values) > 0
    for v, o in zip(values, out):
        if kind == "int":
            assert type(o) is int and -(2 ** 63) <= o < 2 ** 63
            assert not isinstance(v, (bool, float, list, dict)) and int(v) == o
        elif kind == "timestamp":
            assert isinstance(v, str) and o.utcoffset().total_seconds() == 0
        elif kind == "ip":
            assert isinstance(v, str) and ipaddress.ip_network(v.strip(), strict=False) == o
        else:
            assert isinstance(v, str) and o == v
