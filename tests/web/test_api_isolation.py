"""Property tests: through the Reports API a caller sees only its own reports and events.

The deployment is the real example day plus eight network owners with random (seeded) filters
drawn from the stored events, so filters overlap each other and the example recipients.
Hypothesis then picks callers, report ids (genuine, foreign, mangled, forged, traversal attempts),
list parameters and queries.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import ipaddress
import json
import random
import string

import duckdb
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.constituency import repository
from herald.accounts import apikeys as keys
from herald.web.api import download_token
from herald.web.testing import EXAMPLE_DAY, build_deployment

HC = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


class World:
    """Deployment, keys, every report entry and each recipient's report rows."""


def _random_recipients(dep, rng: random.Random) -> None:
    data = dep.settings.paths.data / "events" / f"date={EXAMPLE_DAY}"
    con = duckdb.connect()
    ips, asns, geos = set(), set(), set()
    for d in (p for p in data.iterdir() if p.name.startswith("type=")):
        cols = {r[0] for r in con.execute(
            "SELECT name FROM parquet_schema(?)", [str(d / "*.parquet")]).fetchall()}
        for ipc, asc, gc in (("ip", "asn", "geo"), ("src_ip", "src_asn", "src_geo")):
            if ipc in cols:
                for ip, asn, geo in con.execute(
                        f'SELECT "{ipc}", "{asc}", "{gc}" FROM read_parquet(?)',
                        [str(d / "*.parquet")]).fetchall():
                    if ip:
                        ips.add(ip)
                    if asn:
                        asns.add(int(asn))
                    if geo:
                        geos.add(geo)
    con.close()
    ips, asns, geos = sorted(ips), sorted(asns), sorted(geos)
    for i in range(8):
        name = f"Random Owner {i}"
        repository.add_recipient(dep.db, name, f"abuse@random{i}.example", "test")
        for ip in rng.sample(ips, 2):
            addr = ipaddress.ip_address(ip)
            plen = rng.choice([8, 16, 24]) if addr.version == 4 else rng.choice([32, 48])
            net = ipaddress.ip_network(f"{ip}/{plen}", strict=False)
            repository.add_filter(dep.db, name, "cidr", str(net), "test", verified=True)
        repository.add_filter(dep.db, name, "asn", rng.choice(asns), "test", verified=True)
        if rng.random() < 0.5:
            repository.add_filter(dep.db, name, "country", rng.choice(geos), "test", verified=True)
        # a pending claim must never widen what the recipient sees
        repository.add_filter(dep.db, name, "country", rng.choice(geos), "test")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("iso")
    dep = build_deployment(root, f"sqlite:///{root / 'herald.db'}")
    _random_recipients(dep, random.Random(20261130))
    dep.run()
    w = World()
    w.dep, w.client, w.state = dep, TestClient(dep.app), dep.app.state.herald
    infos = repository.list_recipients(dep.db)
    w.names = [r.name for r in infos]
    w.ids = {r.name: r.id for r in infos}
    w.keys = {n: keys.create_key(dep.db, dep.server_key, n, "test") for n in w.names}
    w.entries = {}
    w.rows = {}
    for r in infos:
        row = _row(w.state, r.id)
        w.entries[r.name] = w.state.catalog.reports(row)
        w.rows[r.name] = set()
        for e in w.entries[r.name]:
            for rec in csv.DictReader(io.StringIO(e.path.read_text())):
                w.rows[r.name].add((e.type, tuple(sorted(rec.items()))))
    assert sum(len(v) for v in w.entries.values()) >= 15
    w.tokens = [(n, e, download_token(w.state, e, w.ids[n], w.keys[n].key_id))
                for n in w.names for e in w.entries[n]]
    # what the daily run routes with: verified filters, operation shares for law enforcement
    from herald.constituency.sync import routing_recipients
    from herald.web.catalog import union_shares

    shares = routing_recipients(dep.db, EXAMPLE_DAY)
    w.own = {n: union_shares([r for r in shares if r.name == n]) for n in w.names}
    yield w
    dep.db.dispose()


def _row(state, rid):
    from herald.web.common import recipient_row

    return recipient_row(state, rid)


def call(w, name, method, req):
    key = w.keys[name]
    body = json.dumps(dict(req, apikey=key.key_id)).encode()
    mac = hmac.new(key.secret.encode(), body, hashlib.sha256).hexdigest()
    return w.client.post(f"/api2/{method}", content=body, headers={"HMAC2": mac})


def _mangle(token: str, how: int, rng: random.Random) -> str:
    if how == 0:
        return token
    if how == 1:
        i = rng.randrange(len(token))
        return token[:i] + rng.choice(string.ascii_letters.replace(token[i], "")) + token[i + 1:]
    if how == 2:
        return token[: rng.randrange(1, len(token))]
    return "".join(rng.choice(string.ascii_letters + string.digits + "-_=") for _ in range(
        rng.choice([8, 44, 120, len(token)])))


@settings(max_examples=700, deadline=None, suppress_health_check=HC)
@given(data=st.data())
def test_download_only_own(world, data):
    w = world
    caller = data.draw(st.sampled_from(w.names), label="caller")
    owner, entry, token = data.draw(st.sampled_from(w.tokens), label="report")
    how = data.draw(st.sampled_from([0, 0, 1, 2, 3]), label="mangle")
    token = _mangle(token, how, random.Random(data.draw(st.integers(0, 2**32))))
    r = call(w, caller, "reports/download", {"id": token})
    if r.status_code == 200:
        assert caller == owner, "served another recipient's report"
        assert r.content == entry.path.read_bytes()
    else:
        assert r.status_code == 404 and r.json()["error"]
        assert how != 0 or caller != owner, "own genuine id refused"


@settings(max_examples=200, deadline=None, suppress_health_check=HC)
@given(data=st.data())
def test_forged_ids_never_escape(world, data):
    """Ids encrypted with the real server key but naming any recipient/day/file: served only when
    they name an existing report of that recipient, and then only to it."""
    w = world
    caller = data.draw(st.sampled_from(w.names))
    target = data.draw(st.sampled_from(w.names))
    files = [e.file for e in w.entries[target]] + [e.file for n in w.names for e in w.entries[n]]
    day = data.draw(st.sampled_from([EXAMPLE_DAY, "2026-11-29", "..", "../2026-11-30", ""]))
    f = data.draw(st.one_of(st.sampled_from(files), st.sampled_from(
        ["../herald.db", "../../data/secret.key", "/etc/passwd", ".", "..", "x/../" + files[0]]),
        st.text(max_size=30)))
    # ids name the target's live API key and its secret, made on the app clock, like real ones
    key_id = w.keys[target].key_id
    token = w.state.server_key.fernet("download").encrypt_at_time(json.dumps(
        {"r": w.ids[target], "d": day, "f": f, "k": key_id,
         "s": keys.current_fingerprint(w.state.db, key_id)}).encode(),
        int(w.state.clock().timestamp())).decode()
    r = call(w, caller, "reports/download", {"id": token})
    plain = w.client.get(f"/dl/{token}")
    own = {(e.day, e.file): e for e in w.entries[target]}
    if (day, f) in own:
        assert plain.status_code == 200 and plain.content == own[(day, f)].path.read_bytes()
        assert r.status_code == (200 if caller == target else 404)
    else:
        assert r.status_code == 404 and plain.status_code == 404


@settings(max_examples=250, deadline=None, suppress_health_check=HC)
@given(data=st.data())
def test_list_only_own(world, data):
    w = world
    caller = data.draw(st.sampled_from(w.names))
    req = {}
    if data.draw(st.booleans()):
        req["date"] = data.draw(st.sampled_from(
            [EXAMPLE_DAY, "2026-11-01:2026-11-30", "2026-11-30:2026-12-01", "2026-11-29"]))
    all_types = sorted({e.type for n in w.names for e in w.entries[n]})
    if data.draw(st.booleans()):
        req["type"] = data.draw(st.sampled_from(all_types))
    if data.draw(st.booleans()):
        req["reports"] = data.draw(st.lists(st.sampled_from(
            [n.lower().replace(" ", "_") for n in w.names] + ["cert_at", "x"]), max_size=3))
    r = call(w, caller, "reports/list", req)
    assert r.status_code == 200
    own_files = {e.file for e in w.entries[caller]}
    listed = r.json()
    assert {x["file"] for x in listed} <= own_files
    expected = {e.file for e in w.entries[caller]
                if req.get("date", EXAMPLE_DAY) != "2026-11-29"
                and ("type" not in req or e.type == req["type"])}
    slug = w.entries[caller][0].slug if w.entries[caller] else None
    if req.get("reports") and slug not in req["reports"]:
        expected = set()
    assert {x["file"] for x in listed} == expected


@settings(max_examples=50, deadline=None, suppress_health_check=HC)
@given(data=st.data())
def test_query_only_own_events(world, data):
    w = world
    caller = data.draw(st.sampled_from(w.names))
    me = w.own[caller]
    pool_asn = sorted({a for r in w.own.values() for a in r.asns})
    pool_geo = sorted({c for r in w.own.values() for c in r.countries})
    pool_net = sorted({str(c) for r in w.own.values() for c in r.cidrs})
    query = {}
    if pool_asn and data.draw(st.booleans()):
        query["asn"] = data.draw(st.sampled_from(pool_asn))
    if pool_geo and data.draw(st.booleans()):
        query["geo"] = data.draw(st.sampled_from(pool_geo))
    if pool_net and data.draw(st.booleans()):
        query["ip"] = data.draw(st.sampled_from(pool_net))
    types = sorted({e.type for n in w.names for e in w.entries[n]})
    body = {"query": query, "date": EXAMPLE_DAY, "limit": 10000,
            "type": data.draw(st.sampled_from(types))}
    r = call(w, caller, "reports/query", body)
    mine = ("asn" not in query or query["asn"] in me.asns) and (
        "geo" not in query or query["geo"] in me.countries) and (
        "ip" not in query or any(ipaddress.ip_network(query["ip"]).subnet_of(c)
                                 for c in me.cidrs if c.version == ipaddress.ip_network(
                                     query["ip"]).version))
    if not query or not mine:
        assert r.status_code == 403, r.text
        return
    assert r.status_code == 200, r.text
    for row in r.json():
        t = row.pop("type")
        key = (t, tuple(sorted((k, "" if v is None else str(v)) for k, v in row.items())))
        assert key in w.rows[caller], "query returned an event that is not in the caller's reports"
