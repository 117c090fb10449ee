"""DNS sinkhole: answers (RFC 1035), REFUSED for other names, 512-byte UDP limit with TC, minimal ANY
(RFC 8482), per-client rate limit, one Parquet row per query; the batcher; the [sinkhole] config.

Servers run on 127.0.0.1 with ephemeral ports only.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pyarrow.parquet as pq
import pytest

from herald.config import load_settings
from herald.errors import ConfigError
from herald.ratelimit import TokenBucketLimiter
from herald.schema import default_registry
from herald.sensors import config as sconfig
from herald.sensors.batch import EventBatcher, now_us
from herald.sensors.config import load_sinkhole_config, load_sinkhole_domains
from herald.sensors.domains import DomainTable, SinkholeDomain
from herald.sensors.runtime import BackgroundSensor
from herald.sensors.sinkhole_dns import DnsSinkhole
from herald.sensors.testing import INBOX_NAME_RE, inbox_files, read_inbox, sinkhole_settings

LO = "127.0.0.1"
DOMAINS = [
    {"name": "evil-c2.example", "family": "emotet", "tag": "takedown-x", "operation": "op-x"},
    {"name": "Other-C2.example.", "family": "qakbot", "tag": "takedown-y", "infection": "qbot"},
]


def _config(tmp_path: Path, **over):
    sk = {"sensor_name": "t1", "dns_listen": f"{LO}:0", "answer_ipv4": ["192.0.2.10", "192.0.2.11"],
          "answer_ipv6": ["2001:db8::10"], "ttl": 120, "rate_per_client": 1000, "domains": DOMAINS}
    sk.update(over)
    return load_sinkhole_config(sinkhole_settings(tmp_path, sk))


def _start(tmp_path: Path, **over):
    cfg = _config(tmp_path, **over)
    batcher = EventBatcher(cfg.inbox, "t1_dns", cfg.batch_rows, cfg.batch_seconds)
    server = DnsSinkhole(cfg, batcher)
    return BackgroundSensor([server], batcher).start(), server, cfg


def _udp_raw(port: int, wire: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, (LO, port))
        try:
            return s.recvfrom(65_535)[0]
        except socket.timeout:
            return None


def _addresses(resp: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in resp.answer for rd in rrset)


def test_a_and_aaaa_over_udp_and_tcp(tmp_path):
    bg, server, cfg = _start(tmp_path)
    port = bg.port("dns-udp")
    assert bg.port("dns-tcp") == port
    try:
        for send in (dns.query.udp, dns.query.tcp):
            for qname in ("evil-c2.example", "WWW.Evil-C2.Example.", "a.b.c.other-c2.example"):
                r = send(dns.message.make_query(qname, "A"), LO, port=port, timeout=2)
                assert r.rcode() == dns.rcode.NOERROR
                assert r.flags & dns.flags.AA and not r.flags & dns.flags.RA and not r.flags & dns.flags.TC
                assert _addresses(r) == ["192.0.2.10", "192.0.2.11"]
                assert r.answer[0].ttl == 120
                assert r.answer[0].name == dns.name.from_text(qname)  # 0x20 case echoed
                r6 = send(dns.message.make_query(qname, "AAAA"), LO, port=port, timeout=2)
                assert _addresses(r6) == ["2001:db8::10"]
        # A name that only shares a string suffix is not below the domain.
        r = dns.query.udp(dns.message.make_query("notevil-c2.example", "A"), LO, port=port, timeout=2)
        assert r.rcode() == dns.rcode.REFUSED
    finally:
        bg.stop()
    assert server.stats["answered"] == 12


def test_repeated_questions_each_recorded_with_their_own_id(tmp_path):
    """Responses are cached by question bytes; every repeat must still be answered with its own ID
    and recorded."""
    bg, server, cfg = _start(tmp_path)
    port = bg.port("dns-udp")
    try:
        for qid in (1, 2, 0xFFFF):
            for qname in ("rep.evil-c2.example", "nope.test"):
                q = dns.message.make_query(qname, "A", id=qid)
                raw = _udp_raw(port, q.to_wire())
                r = dns.message.from_wire(raw)
                assert r.id == qid and q.is_response(r)
                assert r.rcode() == (dns.rcode.NOERROR if "evil" in qname else dns.rcode.REFUSED)
    finally:
        bg.stop()
    assert (server.stats["answered"], server.stats["refused"]) == (3, 3)
    assert read_inbox(cfg.inbox).column("query").to_pylist() == ["rep.evil-c2.example"] * 3


def test_unknown_names_refused_and_not_recorded(tmp_path):
    bg, server, cfg = _start(tmp_path)
    port = bg.port("dns-udp")
    try:
        for qname, send in (("google.com", dns.query.udp), ("example", dns.query.tcp),
                            ("evil-c2.example.attacker.test", dns.query.udp), (".", dns.query.udp)):
            q = dns.message.make_query(qname, "A")  # RD is set: recursion is still not offered
            r = send(q, LO, port=port, timeout=2)
            assert r.rcode() == dns.rcode.REFUSED
            assert not r.answer and not r.flags & dns.flags.RA and not r.flags & dns.flags.AA
    finally:
        bg.stop()
    assert inbox_files(cfg.inbox) == []
    assert server.stats["refused"] == 4


def test_other_types_get_nodata_with_soa_and_are_recorded(tmp_path):
    bg, _, cfg = _start(tmp_path)
    port = bg.port("dns-udp")
    try:
        r = dns.query.udp(dns.message.make_query("x.evil-c2.example", "MX"), LO, port=port, timeout=2)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
        assert r.authority[0].rdtype == dns.rdatatype.SOA
        assert r.authority[0].name == dns.name.from_text("evil-c2.example")
        r = dns.query.udp(dns.message.make_query("evil-c2.example", "SOA"), LO, port=port, timeout=2)
        assert r.answer[0].rdtype == dns.rdatatype.SOA
    finally:
        bg.stop()
    t = read_inbox(cfg.inbox, "event4_sinkhole_dns")
    assert t.column("query_type").to_pylist() == ["MX", "SOA"]


def test_every_query_is_a_row_with_shadowserver_columns(tmp_path):
    bg, _, cfg = _start(tmp_path, batch_rows=4)
    port = bg.port("dns-udp")
    sent = []
    t0 = now_us()
    try:
        for i in range(7):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((LO, 0))
                qname, qtype = (f"h{i}.evil-c2.example", "A") if i % 2 else (f"h{i}.other-c2.example", "AAAA")
                r = dns.query.udp(dns.message.make_query(qname, qtype), LO, port=port, timeout=2, sock=s)
                assert r.rcode() == dns.rcode.NOERROR
                sent.append(("udp", s.getsockname()[1], qname, qtype))
        with socket.create_connection((LO, port), timeout=2) as s:
            for qname in ("t1.evil-c2.example", "t2.evil-c2.example"):
                w = dns.message.make_query(qname, "A").to_wire()
                s.sendall(struct.pack("!H", len(w)) + w)
                (n,) = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))
                assert dns.message.from_wire(s.recv(n, socket.MSG_WAITALL)).rcode() == dns.rcode.NOERROR
                sent.append(("tcp", s.getsockname()[1], qname, "A"))
        dns.query.udp(dns.message.make_query("unknown.test", "A"), LO, port=port, timeout=2)
        # batch_rows=4: two full files were written while serving, the rest waits in memory.
        assert bg.call(lambda: bg.batcher.buffered) == 1
        assert len(inbox_files(cfg.inbox)) == 2
    finally:
        bg.stop()
    t1 = now_us()
    files = inbox_files(cfg.inbox)
    assert len(files) == 3
    for f in files:
        m = INBOX_NAME_RE.match(f.name)
        assert m and m["rtype"] == "event4_sinkhole_dns" and m["sensor"] == "t1_dns"
    assert not list(cfg.inbox.glob("*/.*"))  # no temporary files left
    table = read_inbox(cfg.inbox, "event4_sinkhole_dns")
    assert table.schema.equals(default_registry().get("event4_sinkhole_dns").arrow_schema)
    rows = table.to_pylist()
    assert [(r["protocol"], r["src_port"], r["query"], r["query_type"]) for r in rows] == sent
    for r in rows:
        assert r["src_ip"] == LO and r["count"] in (1, "1") and r["severity"] == "info"
        assert t0 <= r["timestamp"].timestamp() * 1e6 <= t1 + 1
        if r["query"].endswith("evil-c2.example"):
            assert (r["family"], r["tag"], r["infection"]) == ("emotet", "takedown-x", "emotet")
        else:
            assert (r["family"], r["tag"], r["infection"]) == ("qakbot", "takedown-y", "qbot")


def test_udp_answers_fit_512_bytes_and_set_tc(tmp_path):
    many = [f"192.0.2.{i}" for i in range(1, 61)]  # 60 A records: about 1 KB
    bg, server, _ = _start(tmp_path, answer_ipv4=many)
    port = bg.port("dns-udp")
    try:
        q = dns.message.make_query("big.evil-c2.example", "A", use_edns=0, payload=4096)
        raw = _udp_raw(port, q.to_wire())
        assert raw is not None and len(raw) <= 512
        r = dns.message.from_wire(raw)
        assert r.flags & dns.flags.TC and not r.answer
        assert r.edns == 0 and r.payload == 512  # we advertise 512 whatever the client offers
        # Over TCP the full answer comes back.
        r = dns.query.tcp(q, LO, port=port, timeout=2)
        assert not r.flags & dns.flags.TC and len(_addresses(r)) == 60
        # A small answer over UDP is not truncated.
        raw = _udp_raw(port, dns.message.make_query("big.evil-c2.example", "AAAA").to_wire())
        assert raw is not None and not dns.message.from_wire(raw).flags & dns.flags.TC
    finally:
        bg.stop()
    assert server.stats["truncated"] == 1


def test_any_gets_one_record(tmp_path):
    bg, _, cfg = _start(tmp_path, answer_ipv4=[f"192.0.2.{i}" for i in range(1, 30)])
    port = bg.port("dns-udp")
    try:
        q = dns.message.make_query("evil-c2.example", "ANY")
        wire = q.to_wire()
        raw = _udp_raw(port, wire)
        r = dns.message.from_wire(raw)
        assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.TC
        assert sum(len(rr) for rr in r.answer) == 1 and not r.authority and not r.additional
        assert len(raw) <= len(wire) + 16  # one A record: no amplification
    finally:
        bg.stop()
    bg2, _, _ = _start(tmp_path, answer_ipv4=[], answer_ipv6=[])
    try:
        r = dns.query.udp(dns.message.make_query("evil-c2.example", "ANY"), LO, port=bg2.port("dns-udp"), timeout=2)
        assert [rr.rdtype for rr in r.answer] == [dns.rdatatype.HINFO]  # RFC 8482 section 4.2
        assert r.answer[0][0].cpu == b"RFC8482"
    finally:
        bg2.stop()


def test_malformed_responses_and_other_opcodes(tmp_path):
    bg, server, cfg = _start(tmp_path)
    port = bg.port("dns-udp")
    try:
        assert _udp_raw(port, b"\x00\x01garbage", timeout=0.3) is None
        resp = dns.message.make_response(dns.message.make_query("evil-c2.example", "A"))
        assert _udp_raw(port, resp.to_wire(), timeout=0.3) is None  # QR set: never answered
        notify = dns.message.make_query("evil-c2.example", "SOA")
        notify.set_opcode(dns.opcode.NOTIFY)
        r = dns.message.from_wire(_udp_raw(port, notify.to_wire()))
        assert r.rcode() == dns.rcode.NOTIMP
        q2 = dns.message.make_query("evil-c2.example", "A")
        q2.question.append(dns.message.make_query("other-c2.example", "A").question[0])
        r = dns.message.from_wire(_udp_raw(port, q2.to_wire()))
        assert r.rcode() == dns.rcode.FORMERR and not r.answer
        # Still serving.
        r = dns.query.udp(dns.message.make_query("evil-c2.example", "A"), LO, port=port, timeout=2)
        assert r.rcode() == dns.rcode.NOERROR
    finally:
        bg.stop()
    assert server.stats["dropped"] == 2
    assert read_inbox(cfg.inbox).num_rows == 1


def test_rate_limit_per_client(tmp_path):
    bg, server, cfg = _start(tmp_path, rate_per_client=0.1, rate_burst=3)
    port = bg.port("dns-udp")
    answered = 0
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(10):  # a burst of 10, far faster than the 0.1 q/s refill
                s.sendto(dns.message.make_query(f"r{i}.evil-c2.example", "A").to_wire(), (LO, port))
            s.settimeout(0.5)
            for _ in range(10):
                try:
                    s.recvfrom(2048)
                except socket.timeout:
                    break
                answered += 1
    finally:
        bg.stop()
    assert answered == 3
    assert server.stats["rate_limited"] == 7
    assert read_inbox(cfg.inbox).num_rows == 3


def test_token_bucket_refills_and_is_bounded():
    now = [0.0]
    lim = TokenBucketLimiter(rate=2, burst=2, max_keys=2, clock=lambda: now[0])
    assert [lim.allow("a") for _ in range(3)] == [True, True, False]
    now[0] = 0.5  # one token back
    assert [lim.allow("a") for _ in range(2)] == [True, False]
    assert lim.allow("b") and lim.allow("c")  # "a" is evicted (least recently used)
    assert len(lim) == 2 and lim.dropped == 2
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate=0, burst=1)


def test_batcher_flushes_by_rows_time_and_day(tmp_path):
    clock = [1000.0]  # the batcher's monotonic clock, moved by the test (no sleep, no load race)
    rtype = default_registry().get("event4_sinkhole_dns")
    b = EventBatcher(tmp_path, "s1", batch_rows=3, batch_seconds=0.2, clock=lambda: clock[0])
    for i in range(7):
        b.add(rtype, {"timestamp": now_us(), "src_ip": "192.0.2.1", "src_port": i, "count": 1})
    assert b.buffered == 1 and len(inbox_files(tmp_path)) == 2
    clock[0] += 0.19
    b.tick()
    assert b.buffered == 1  # not old enough yet
    clock[0] += 0.02
    b.tick()
    assert b.buffered == 0 and len(inbox_files(tmp_path)) == 3
    # A batch that spans midnight UTC becomes one file per day, each in its day folder.
    day1 = 1_767_225_599_000_000  # 2025-12-31T23:59:59Z
    b.add(rtype, {"timestamp": day1, "src_ip": "192.0.2.1", "src_port": 1})
    b.add(rtype, {"timestamp": day1 + 2_000_000, "src_ip": "192.0.2.1", "src_port": 2})
    paths = b.flush()
    assert [p.parent.name for p in paths] == ["2025-12-31", "2026-01-01"]
    assert [p.name[:10] for p in paths] == ["2025-12-31", "2026-01-01"]
    assert pq.read_table(paths[1]).column("src_port").to_pylist() == [2]
    assert read_inbox(tmp_path).num_rows == 9
    with pytest.raises(ValueError):
        EventBatcher(tmp_path, "bad-name")


def test_batcher_keeps_rows_when_write_fails(tmp_path):
    rtype = default_registry().get("event4_sinkhole_dns")
    blocker = tmp_path / "inbox"
    blocker.write_text("not a folder")  # the day folder cannot be created below a file
    b = EventBatcher(blocker, "s1", batch_rows=10)
    b.add(rtype, {"timestamp": now_us(), "src_ip": "192.0.2.1"})
    from herald.errors import StoreError

    with pytest.raises(StoreError):
        b.flush()
    assert b.buffered == 1
    blocker.unlink()
    assert len(b.flush()) == 1 and b.buffered == 0


def test_domains_config_and_provider_hook(tmp_path):
    toml = tmp_path / "herald.toml"
    toml.write_text(
        '[paths]\ninbox = "in"\n[sinkhole]\ndns_listen = "127.0.0.1:5353"\nbatch_rows = 10\n'
        '[[sinkhole.domains]]\nname = "Evil-C2.example."\nfamily = "emotet"\ntag = "takedown-x"\n'
        'operation = "op-x"\naddresses = ["192.0.2.10"]\n'
    )
    settings = load_settings(toml)
    cfg = load_sinkhole_config(settings)
    assert cfg.inbox == (tmp_path / "in").resolve() and cfg.batch_rows == 10
    assert cfg.dns_listen == [("127.0.0.1", 5353)] and cfg.rate_per_client == 20
    [d] = cfg.domains
    assert (d.name, d.family, d.tag, d.operation, d.infection) == ("evil-c2.example", "emotet", "takedown-x",
                                                                   "op-x", "emotet")
    table = DomainTable(cfg.domains)
    assert table.lookup("A.B.EVIL-C2.EXAMPLE.") is d and table.lookup("c2.example") is None
    assert table.by_address("192.0.2.10") is d

    def provider(s):
        assert s is settings
        return [SinkholeDomain(name="db-op.example", family="dridex", source="db"),
                SinkholeDomain(name="evil-c2.example", family="other", source="db")]

    sconfig.register_domain_provider(provider)
    try:
        names = {x.name: x.family for x in load_sinkhole_domains(settings)}
    finally:
        sconfig.DOMAIN_PROVIDERS.remove(provider)
    assert names == {"evil-c2.example": "emotet", "db-op.example": "dridex"}  # the TOML entry wins

    for bad in ('[[sinkhole.domains]]\nname = "a.example"\n[[sinkhole.domains]]\nname = "A.example"\n',
                '[[sinkhole.domains]]\nfamily = "x"\n',
                '[sinkhole]\nsensor_name = "has-hyphen"\n',
                '[sinkhole]\nbatch_rows = 0\n',
                '[sinkhole]\ndns_listen = "localhost:53"\n',
                '[sinkhole]\nanswer_ipv4 = ["2001:db8::1"]\n',
                '[sinkhole]\nhttps_listen = ["127.0.0.1:0"]\n'):
        toml.write_text(bad)
        with pytest.raises(ConfigError):
            load_sinkhole_config(load_settings(toml))


def test_cli_dns_sigterm_flushes_everything(tmp_path, repo_root):
    toml = tmp_path / "herald.toml"
    toml.write_text(
        '[paths]\ninbox = "inbox"\n[sinkhole]\nsensor_name = "cli"\ndns_listen = "127.0.0.1:0"\n'
        'answer_ipv4 = ["192.0.2.10"]\nbatch_rows = 1000\nbatch_seconds = 600\nrate_per_client = 1000\n'
        '[[sinkhole.domains]]\nname = "evil-c2.example"\nfamily = "emotet"\n'
    )
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.Popen([sys.executable, "-m", "herald.cli", "sinkhole", "dns", "--config", str(toml)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening dns-udp 127.0.0.1 "), line + proc.stderr.read()
        port = int(line.split()[-1])
        assert proc.stdout.readline() == f"listening dns-tcp 127.0.0.1 {port}\n"
        for i in range(25):
            r = dns.query.udp(dns.message.make_query(f"n{i}.evil-c2.example", "A"), LO, port=port, timeout=2)
            assert r.rcode() == dns.rcode.NOERROR
        assert inbox_files(tmp_path / "inbox") == []  # nothing flushed yet (batch of 1000, 600 s)
        # SIGHUP reloads the domains: a newly added domain is answered, and the answer is not stale.
        q_new = dns.message.make_query("www.new-c2.example", "A")
        assert dns.query.udp(q_new, LO, port=port, timeout=2).rcode() == dns.rcode.REFUSED
        toml.write_text(toml.read_text() + '[[sinkhole.domains]]\nname = "new-c2.example"\nfamily = "dridex"\n')
        proc.send_signal(signal.SIGHUP)
        assert proc.stdout.readline().startswith("reloaded 2 sinkholed domains")
        assert dns.query.udp(q_new, LO, port=port, timeout=2).rcode() == dns.rcode.NOERROR
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "26 rows written" in out
    families = read_inbox(tmp_path / "inbox", "event4_sinkhole_dns").column("family").to_pylist()
    assert families == ["emotet"] * 25 + ["dridex"]


def test_address_helpers_and_ipv6_dns_clients(tmp_path):
    from herald.sensors.runtime import canonical_ip, event_type

    assert canonical_ip("::ffff:192.0.2.1") == "192.0.2.1"
    assert canonical_ip("2001:DB8:0:0::1%eth0") == "2001:db8::1"
    reg = default_registry()
    assert event_type(reg, "sinkhole_http", "2001:db8::1").name == "event6_sinkhole_http"
    assert event_type(reg, "sinkhole_http", "192.0.2.1").name == "event4_sinkhole_http"
    # No event6_sinkhole_dns in the Shadowserver schema: IPv6 DNS clients share the event4 type.
    assert "event6_sinkhole_dns" not in reg
    cfg = _config(tmp_path)
    b = EventBatcher(cfg.inbox, "t1_dns", 10, 5)
    out = DnsSinkhole(cfg, b).handle(dns.message.make_query("evil-c2.example", "A").to_wire(),
                                      "2001:db8::7", 5353, "udp")
    assert _addresses(dns.message.from_wire(out)) == ["192.0.2.10", "192.0.2.11"]
    b.close()
    [row] = read_inbox(cfg.inbox, "event4_sinkhole_dns").to_pylist()
    assert (row["src_ip"], row["src_port"]) == ("2001:db8::7", 5353)


def test_domains_from_active_operations(tmp_path):
    from herald.constituency.operations import add_operation
    from herald.store.db import open_db

    url = f"sqlite:///{tmp_path / 'meta.db'}"
    db = open_db(url)
    add_operation(db, "op-x", "2020-01-01", "test", families=["Emotet"], tags=["takedown-x"],
                  sinkholed_domains=["db-c2.example", "evil-c2.example"])
    add_operation(db, "op-old", "2020-01-01", "test", families=["zeus"], sinkholed_domains=["old-c2.example"],
                  end_date="2020-12-31")
    add_operation(db, "op-multi", "2020-01-01", "test", families=["a", "b"], sinkholed_domains=["multi.example"])
    db.engine.dispose()
    settings = sinkhole_settings(tmp_path, {"operations": True, "domains": DOMAINS})
    settings.database_url = url
    got = {d.name: (d.family, d.tag, d.operation, d.source) for d in load_sinkhole_domains(settings)}
    assert got["db-c2.example"] == ("emotet", "takedown-x", "op-x", "operation op-x")
    assert got["evil-c2.example"][3] == "toml"  # the TOML entry wins
    assert got["multi.example"] == (None, None, "op-multi", "operation op-multi")  # ambiguous family
    assert "old-c2.example" not in got  # ended operation
    settings.raw["sinkhole"]["operations"] = False
    assert "db-c2.example" not in {d.name for d in load_sinkhole_domains(settings)}
