"""``reports/query`` never shows a caller anything outside its own rows (issue 11).

The deployment is the real example day (herald.web.testing, fixed clock).  "Foreign" values are
the addresses, host names and URLs stored in the day's events (read from the Parquet store) that
do not occur in the caller's own report files: no answer to that caller -- rows, facets, errors,
headers -- may contain one.  The helpers here are shared with ``test_api_query_props.py``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import re

import duckdb
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from herald.schema.registry import IP_COLUMNS
from herald.accounts import apikeys as keys
from herald.web.testing import EXAMPLE_DAY, build_deployment

NAMES = ["Example Cable ISP", "Alpine Hosting", "Example Mobile RO", "Example IPv6 Broadband",
         "CERT.at", "CERT-Bund", "Operation Virut Task Force"]
#: Columns whose values are addresses, host names or URLs.
SENSITIVE_RE = re.compile(r"(^|_)(ip|host|hostname|url|domain|referer|servername)$")
_SPLIT = re.compile(r"[\s'\"(),\[\]{}<>`]+")


class World:
    """Deployment, client, keys; per recipient its own values and the foreign ones."""


def stored_sensitive(dep) -> tuple[set[str], dict[str, dict[str, str]]]:
    """Every address/host/URL value in the day's Parquet store, and ``type -> column -> type``."""
    base = dep.settings.paths.data / "events" / f"date={EXAMPLE_DAY}"
    con = duckdb.connect()
    values: set[str] = set()
    columns: dict[str, dict[str, str]] = {}
    for d in sorted(p for p in base.iterdir() if p.name.startswith("type=")):
        glob = str(d / "*.parquet")
        schema = con.execute("SELECT column_name, column_type FROM "
                             "(DESCRIBE SELECT * FROM read_parquet(?))", [glob]).fetchall()
        columns[d.name.removeprefix("type=")] = dict(schema)
        for col, typ in schema:
            if typ == "VARCHAR" and (col in IP_COLUMNS or SENSITIVE_RE.search(col)):
                for (v,) in con.execute(f'SELECT DISTINCT "{col}" FROM read_parquet(?)',
                                        [glob]).fetchall():
                    if v and len(v) >= 4:
                        values.add(v)
    con.close()
    return values, columns


def own_values(state, dep, name: str) -> tuple[set[str], set]:
    """Every cell value of the recipient's report files, and its rows ``(type, sorted items)``."""
    from types import SimpleNamespace

    from herald.constituency import repository
    from herald.constituency.recipients import slugify
    from herald.reports.cells import unescape_formula

    rid = {r.name: r.id for r in repository.list_recipients(dep.db)}[name]
    vals, rows = set(), set()
    for e in state.catalog.reports(SimpleNamespace(id=rid, name=name, slug=slugify(name))):
        for raw in csv.DictReader(io.StringIO(e.path.read_text())):
            # the values the cells stand for (reports escape spreadsheet formulas, docs/reports.md)
            rec = {k: unescape_formula(v) for k, v in raw.items()}
            vals.update(v for v in rec.values() if v)
            rows.add((e.type, tuple(sorted(rec.items()))))
    return vals, rows


def make_world(root, db_url) -> World:
    """Build the example deployment with one key per example recipient."""
    w = World()
    w.dep = build_deployment(root, db_url)
    w.client = TestClient(w.dep.app)
    w.state = w.dep.app.state.herald
    w.keys = {n: keys.create_key(w.dep.db, w.dep.server_key, n, "test") for n in NAMES}
    w.sensitive, w.columns = stored_sensitive(w.dep)
    w.own, w.rows, w.foreign = {}, {}, {}
    for n in NAMES:
        w.own[n], w.rows[n] = own_values(w.state, w.dep, n)
        w.foreign[n] = w.sensitive - w.own[n]
    from herald.constituency.sync import routing_recipients

    shares = routing_recipients(w.dep.db, EXAMPLE_DAY)
    w.scope = {}
    for n in NAMES:
        mine = [r for r in shares if r.name == n]
        w.scope[n] = {"cidrs": sorted({str(c) for r in mine for c in r.cidrs}),
                      "asns": sorted({a for r in mine for a in r.asns}),
                      "countries": sorted({c for r in mine for c in r.countries})}
    return w


def call(w, name, req, method="reports/query"):
    """A signed request as ``name`` (like Shadowserver's call-api.py)."""
    key = w.keys[name]
    body = json.dumps(dict(req, apikey=key.key_id)).encode()
    mac = hmac.new(key.secret.encode(), body, hashlib.sha256).hexdigest()
    return w.client.post(f"/api2/{method}", content=body, headers={"HMAC2": mac})


def _leaves(doc, out: list[str]) -> None:
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(str(k))
            _leaves(v, out)
    elif isinstance(doc, list):
        for v in doc:
            _leaves(v, out)
    elif doc is not None:
        out.append(str(doc))


def leaked(w, name, resp) -> set[str]:
    """Foreign values (for ``name``) found in the response's body or headers."""
    foreign = w.foreign[name]
    texts = [f"{k}: {v}" for k, v in resp.headers.items()]
    try:
        _leaves(resp.json(), texts)
    except ValueError:
        texts.append(resp.text)
    found = set()
    for t in texts:
        for tok in [t, *_SPLIT.split(t)]:
            tok = tok.strip(".,;:")
            if tok in foreign or t in foreign:
                found.add(tok if tok in foreign else t)
    if resp.status_code >= 400:  # small bodies: any substring at all
        found |= {v for v in foreign if len(v) >= 8 and v in resp.text}
    return found


def own_scope(w, name) -> dict:
    """A scope filter the caller owns."""
    s = w.scope[name]
    if s["cidrs"]:
        return {"ip": s["cidrs"][0]}
    if s["asns"]:
        return {"asn": s["asns"][0]}
    return {"geo": s["countries"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("query")
    w = make_world(root, f"sqlite:///{root / 'herald.db'}")
    yield w
    w.dep.db.dispose()


def test_world_has_foreign_data(world):
    """The premise: each caller has rows, and other recipients' addresses exist in the store."""
    for n in NAMES:
        assert world.rows[n], n
        assert world.foreign[n], n
    assert any(v.startswith("2001:448a:") for v in world.foreign["Example Mobile RO"])


def test_wrongly_typed_value_names_the_field_not_the_data(world):
    """The reported leak: an integer for an address column made DuckDB quote another
    recipient's address (``Could not convert string '2001:448a:...'``)."""
    body = {"query": {"ip": "5.12.0.0/14", "src_ip": 1}, "type": "event6_sinkhole_http",
            "date": EXAMPLE_DAY}
    r = call(world, "Example Mobile RO", body)
    assert r.status_code == 400
    assert "src_ip" in r.json()["error"]
    assert not leaked(world, "Example Mobile RO", r)
    assert "convert" not in r.text.lower() and "2001:" not in r.text


@pytest.mark.parametrize("field,value", [
    ("src_ip", 1), ("src_ip", 1.5), ("src_ip", True), ("src_ip", None), ("src_ip", {"a": 1}),
    ("src_ip", [[1]]), ("src_ip", "not-an-address"), ("src_port", "x"), ("src_port", 10 ** 400),
    ("src_port", 2 ** 63), ("src_port", True), ("src_port", 1.0), ("src_port", None),
    ("timestamp", 1), ("timestamp", "yesterday"), ("http_host", 5), ("http_host", False),
    ("http_host", {"$ne": ""}), ("http_host", "x" * 5000),
])
def test_bad_values_are_400_and_the_same_for_every_type(world, field, value):
    """A bad value is refused before any data is read: the same answer whatever the type or
    day holds (no yes/no oracle), and never another recipient's data."""
    answers = set()
    for t, day in [("event6_sinkhole_http", EXAMPLE_DAY), ("event4_sinkhole_http", EXAMPLE_DAY),
                   (None, EXAMPLE_DAY), (None, "2026-11-29")]:  # 11-29: nothing stored
        for name in ["Example Mobile RO", "Operation Virut Task Force", "CERT-Bund"]:
            body = {"query": dict(own_scope(world, name), **{field: value}), "date": day}
            r = call(world, name, dict(body, type=t) if t else body)
            assert r.status_code == 400, (name, t, r.text)
            assert field in r.json()["error"]
            assert not leaked(world, name, r)
            answers.add(r.text)
    assert len(answers) == 1, answers


def test_foreign_scope_value_is_not_echoed(world):
    """A 403 for another recipient's address or network does not repeat it."""
    other = sorted(v for v in world.foreign["CERT.at"] if v.startswith("2603:8080:"))[0]
    for q in [{"ip": other}, {"geo": "AT", "src_ip": other, "ip": other}]:
        r = call(world, "Example Mobile RO", {"query": q, "date": EXAMPLE_DAY})
        assert r.status_code == 403 and other not in r.text


def test_typed_filters_match_like_the_column(world):
    """Integers given as numbers or decimal strings, timestamps as ISO text (UTC), addresses
    and CIDRs on address columns: each selects the caller's rows with that value."""
    name = "CERT.at"
    base = {"query": {"geo": "AT"}, "type": "scan_dns", "date": EXAMPLE_DAY, "limit": 10000}
    rows = call(world, name, base).json()
    assert rows
    port = rows[0]["port"]
    as_int = call(world, name, dict(base, query={"geo": "AT", "port": port})).json()
    as_str = call(world, name, dict(base, query={"geo": "AT", "port": str(port)})).json()
    assert as_int == as_str == [r for r in rows if r["port"] == port]
    ts = rows[0]["timestamp"]
    for text in [ts, ts.replace(" ", "T") + "Z", ts.replace(" ", "T") + "+00:00"]:
        got = call(world, name, dict(base, query={"geo": "AT", "timestamp": text})).json()
        assert got == [r for r in rows if r["timestamp"] == ts], text
    for bad in [{"geo": "AT", "ip": rows[0]["ip"]}, {"geo": "AT", "port": 53, "ip": "x"}]:
        # CERT.at has no network filter: ``ip`` is a scope field, refused before any reading
        assert call(world, name, dict(base, query=bad)).status_code in (400, 403)
    # an address column other than the scope one, by CIDR: sinkhole events' dst_ip
    ev = call(world, "Example Mobile RO", {"query": {"ip": "5.12.0.0/14"}, "date": EXAMPLE_DAY,
                                            "type": "event4_sinkhole_http",
                                            "limit": 10000}).json()
    assert ev
    dst = ev[0]["dst_ip"]
    dnet = ".".join(dst.split(".")[:3]) + ".0/24"
    got = call(world, "Example Mobile RO", {"query": {"ip": "5.12.0.0/14", "dst_ip": dnet},
                                            "date": EXAMPLE_DAY, "type": "event4_sinkhole_http",
                                            "limit": 10000}).json()
    assert got and got == [r for r in ev if r["dst_ip"].startswith(dnet[:-4])]
    assert call(world, "Example Mobile RO", {"query": {"ip": "5.12.0.0/14", "dst_ip": dst},
                                             "date": EXAMPLE_DAY, "type": "event4_sinkhole_http",
                                             "limit": 10000}).json() == [
        r for r in ev if r["dst_ip"] == dst]


def test_repeated_type_returns_rows_once(world):
    """``"type": [t, t]`` (and ``"t,t"``) answers exactly what ``"type": t`` does."""
    base = {"query": {"geo": "AT"}, "date": EXAMPLE_DAY, "limit": 10000}
    once = call(world, "CERT.at", dict(base, type="scan_dns")).json()
    assert once
    for twice in [["scan_dns", "scan_dns"], "scan_dns,scan_dns"]:
        assert call(world, "CERT.at", dict(base, type=twice)).json() == once
    facet = call(world, "CERT.at", dict(base, type=["scan_dns"] * 3, facet="type")).json()
    assert facet == {"scan_dns": len(once)}


def test_date_range_is_bounded(world):
    """At most 31 days per query; 366 stays the bound of reports/stats (reports/list: 92 days,
    see test_list_and_stats_date_bounds)."""
    q = {"query": {"geo": "AT"}}
    assert call(world, "CERT.at", dict(q, date="2026-11-01:2026-12-01")).status_code == 200
    r = call(world, "CERT.at", dict(q, date="2026-10-31:2026-12-01"))
    assert r.status_code == 400 and "31 days" in r.json()["error"]
    assert call(world, "CERT.at", dict(q, date="2026-01-01:2026-12-31")).status_code == 400
    assert call(world, "CERT.at", {"date": "2026-01-01:2026-12-31"},
                "reports/stats").status_code == 200


@pytest.mark.parametrize("method,ok,over", [
    ("reports/list", "2026-09-01:2026-12-01", "2026-08-31:2026-12-01"),      # 92 / 93 days
    ("reports/stats", "2025-12-01:2026-12-01", "2025-11-30:2026-12-01"),     # 366 / 367 days
    ("reports/types", "2025-12-01:2026-12-01", "2025-11-30:2026-12-01"),
])
def test_list_and_stats_date_bounds(world, method, ok, over):
    """reports/list covers at most 92 days, reports/stats and types 366: over the bound is a 400
    naming ``date`` that does not repeat the value."""
    good = call(world, "CERT.at", {"date": ok}, method)
    assert good.status_code == 200, good.text
    assert method == "reports/types" or EXAMPLE_DAY in good.text
    r = call(world, "CERT.at", {"date": over}, method)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err.startswith("date") and "days" in err
    assert over not in r.text and over.split(":")[0] not in r.text


def test_page_is_bounded(world):
    """``page`` at most 10**9: over it, a 400 naming ``page`` without the value."""
    base = {"query": own_scope(world, "CERT.at"), "date": EXAMPLE_DAY, "limit": 1}
    assert call(world, "CERT.at", dict(base, page=10 ** 9)).json() == []
    for page in (10 ** 9 + 1, 987654321987):
        r = call(world, "CERT.at", dict(base, page=page))
        assert r.status_code == 400 and r.json()["error"].startswith("page")
        assert str(page) not in r.text


def test_query_reads_only_the_callers_report_files(world, monkeypatch):
    """The scope step reads the caller's own report files of the day and type and nothing else:
    no Parquet scan of the day, no other recipient's file (bounded work)."""
    from types import SimpleNamespace

    from herald.web import catalog

    read = []
    real = catalog.read_report_csv
    monkeypatch.setattr(catalog, "read_report_csv", lambda p, t: read.append(p) or real(p, t))
    spy = _Spy(world.state.catalog.cursor)
    monkeypatch.setattr(world.state.catalog, "cursor", spy)
    for name in NAMES:
        read.clear()
        rows = call(world, name, {"query": own_scope(world, name), "date": EXAMPLE_DAY,
                                  "limit": 1}).json()
        assert len(rows) == 1, name
        me = SimpleNamespace(id=_rid(world, name), name=name, slug=_slug(name))
        own = {e.path for e in world.state.catalog.reports(me, days=[EXAMPLE_DAY])}
        assert read and set(read) <= own, name
    seen = [sql for sql, _ in spy.seen]
    assert seen and not any("parquet" in sql.lower() for sql in seen)


def _rid(w, name):
    from herald.constituency import repository

    return {r.name: r.id for r in repository.list_recipients(w.dep.db)}[name]


def _slug(name):
    from herald.constituency.recipients import slugify

    return slugify(name)


class _Spy:
    """Wraps DuckDB cursors to record every statement and its parameters."""

    def __init__(self, real):
        self.real, self.seen = real, []

    def __call__(self):
        spy = self

        class Cursor:
            def __init__(self, con):
                self.con = con

            def execute(self, sql, params=None):
                spy.seen.append((sql, params))
                return self.con.execute(sql, params) if params is not None \
                    else self.con.execute(sql)

            def sql(self, sql, params=None):
                spy.seen.append((sql, params))
                return self.con.sql(sql, params=params)

            def __getattr__(self, name):
                return getattr(self.con, name)

        return Cursor(self.real())


def test_limit_and_page_are_pushed_into_the_engine(world, monkeypatch):
    """``limit``/``page`` reach DuckDB as LIMIT/OFFSET, and pages tile the sorted result."""
    cat = world.state.catalog
    spy = _Spy(cat.cursor)
    monkeypatch.setattr(cat, "cursor", spy)
    base = {"query": {"geo": "AT"}, "type": "scan_dns", "date": EXAMPLE_DAY, "sort": "-port"}
    full = call(world, "CERT.at", dict(base, limit=10000)).json()
    spy.seen.clear()
    pages = [call(world, "CERT.at", dict(base, limit=7, page=p)).json() for p in range(1, 30)]
    assert [r for p in pages for r in p] == full
    assert all(len(p) <= 7 for p in pages) and pages[-1] == []
    limited = [(s, p) for s, p in spy.seen if "LIMIT" in s.upper() and "OFFSET" in s.upper()]
    assert [p[-2:] for _, p in limited] == [[7, 7 * i] for i in range(29)]
    spy.seen.clear()
    facet = call(world, "CERT.at", dict(base, facet="port", limit=2, page=2)).json()
    assert len(facet) <= 2
    assert any("LIMIT" in s.upper() and list(p[-2:]) == [2, 2] for s, p in spy.seen)


def test_engine_errors_are_generic(world, monkeypatch, caplog):
    """Whatever DuckDB or Arrow say (here: a message quoting an address) stays on the server,
    and the server log names the error class without its text."""
    import logging

    from herald.web import catalog

    caplog.set_level(logging.WARNING, logger="herald.web.query")

    secret = "2001:448a:dead:beef::1"
    for exc in [duckdb.ConversionException(f"Could not convert string '{secret}' to INT32"),
                pa.ArrowInvalid(f"Failed to parse string: '{secret}'")]:
        def boom(*a, exc=exc, **k):
            raise exc

        monkeypatch.setattr(catalog, "_arrow", boom)
        # a type the caller has a report of: only its own files are read
        r = call(world, "Example Mobile RO", {"query": {"ip": "5.12.0.0/14"},
                                              "date": EXAMPLE_DAY, "type": "event4_sinkhole_http"})
        assert r.status_code == 400, r.text
        assert secret not in r.text and "convert" not in r.text.lower()
        assert r.json() == {"error": "the query could not be evaluated"}
        assert type(exc).__name__ in caplog.text and secret not in caplog.text


def test_law_enforcement_sees_only_its_operation(world):
    """The law-enforcement partner's wrongly typed queries do not leak either, and its rows are
    those of its operation's reports."""
    name = "Operation Virut Task Force"
    q = own_scope(world, name)
    rows = call(world, name, {"query": q, "date": EXAMPLE_DAY, "limit": 10000}).json()
    assert rows
    for row in rows:
        t = row.pop("type")
        assert (t, tuple(sorted((k, "" if v is None else str(v)) for k, v in row.items()))) \
            in world.rows[name]
    for field, value in [("src_ip", 7), ("dst_ip", 7), ("http_url", 1), ("timestamp", 0),
                         ("src_port", "eighty")]:
        r = call(world, name, {"query": dict(q, **{field: value}), "date": EXAMPLE_DAY})
        assert r.status_code in (400, 403) and not leaked(world, name, r), r.text


def test_a_report_file_gone_is_a_generic_error(world, monkeypatch, caplog):
    """A report file that cannot be read (removed between listing and reading) is the generic
    400, never a 500 or the path."""
    import logging

    from herald.web import catalog

    caplog.set_level(logging.WARNING, logger="herald.web.query")

    def gone(path, rtype):
        raise FileNotFoundError(2, "No such file", str(path))

    monkeypatch.setattr(catalog, "read_report_csv", gone)
    r = call(world, "CERT.at", {"query": {"geo": "AT"}, "date": EXAMPLE_DAY})
    assert r.status_code == 400 and r.json() == {"error": "the query could not be evaluated"}
    assert "FileNotFoundError" in caplog.text and ".csv" not in r.text
