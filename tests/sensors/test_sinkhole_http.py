"""HTTP(S) sinkhole: every request becomes a row (RFC 9112 parsing, Host/SNI/destination attribution),
TLS with SNI logging, limits against slowloris and huge headers, and the crash/shutdown guarantees of
the sensor process (SIGTERM flushes everything; kill -9 loses at most one batch).

Servers run on 127.0.0.1 with ephemeral ports only.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from herald.schema import default_registry
from herald.sensors.batch import EventBatcher
from herald.sensors.config import load_sinkhole_config
from herald.sensors.runtime import BackgroundSensor
from herald.sensors.sinkhole_http import HttpSinkhole
from herald.sensors.testing import count_rows, read_inbox, sinkhole_settings

LO = "127.0.0.1"
DOMAINS = [
    {"name": "evil-c2.example", "family": "emotet", "tag": "takedown-x", "operation": "op-x"},
    {"name": "tls-c2.example", "family": "trickbot", "tag": "takedown-t"},
    {"name": "by-address.example", "family": "qakbot", "tag": "takedown-a", "addresses": [LO]},
]


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed EC certificate for tls-c2.example and its key, as PEM files."""
    d = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls-c2.example")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("tls-c2.example")]), critical=False)
            .sign(key, hashes.SHA256()))
    (d / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return d / "c.pem", d / "k.pem"


def _start(tmp_path: Path, **over):
    sk = {"sensor_name": "t1", "http_listen": [f"{LO}:0"], "domains": DOMAINS, "header_timeout": 2,
          "idle_timeout": 2}
    sk.update(over)
    cfg = load_sinkhole_config(sinkhole_settings(tmp_path, sk))
    batcher = EventBatcher(cfg.inbox, "t1_http", cfg.batch_rows, cfg.batch_seconds)
    server = HttpSinkhole(cfg, batcher)
    return BackgroundSensor([server], batcher).start(), server, cfg


def _rows(cfg) -> list[dict]:
    t = read_inbox(cfg.inbox, "event4_sinkhole_http")
    return [] if t is None else t.to_pylist()


def _recv_all(s: socket.socket, deadline: float) -> bytes:
    out = b""
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65_536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def test_requests_become_rows_with_host_and_address_attribution(tmp_path):
    bg, server, cfg = _start(tmp_path)
    port = bg.port("http")
    try:
        c = http.client.HTTPConnection(LO, port, timeout=5)
        c.request("GET", "/gate.php?id=1", headers={"Host": "www.Evil-C2.example:8080", "User-Agent": "bot/1.0",
                                                    "Referer": "http://x.test/", "X-Forwarded-For": "198.51.100.7"})
        r = c.getresponse()
        assert (r.status, r.read(), r.getheader("Content-Length")) == (200, b"", "0")
        c.request("POST", "/post", body=b"x" * 5000, headers={"Host": "evil-c2.example"})
        assert c.getresponse().read() == b""
        c.request("HEAD", "/h", headers={"Host": "unknown.test"})  # attributed by local address
        r = c.getresponse()
        r.read()
        c.putrequest("PUT", "/chunked", skip_host=True, skip_accept_encoding=True)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        c.send(b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n")
        assert c.getresponse().read() == b""
        local_port = c.sock.getsockname()[1]
        c.close()
        # HTTP/1.0 and bare-LF line ends from a raw socket; the server closes after the answer.
        with socket.create_connection((LO, port), timeout=5) as s:
            s.sendall(b"GET /lf HTTP/1.0\nHost: evil-c2.example\n\n")
            resp = _recv_all(s, time.monotonic() + 5)
        assert resp.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in resp
    finally:
        bg.stop()
    rows = _rows(cfg)
    assert [r["http_url"] for r in rows] == ["/gate.php?id=1", "/post", "/h", "/chunked", "/lf"]
    assert server.stats["requests"] == 5
    r0 = rows[0]
    assert (r0["src_ip"], r0["src_port"], r0["dst_ip"], r0["dst_port"]) == (LO, local_port, LO, port)
    assert (r0["http_host"], r0["http_agent"], r0["http_referer"], r0["forwarded_by"]) == (
        "www.evil-c2.example", "bot/1.0", "http://x.test/", "198.51.100.7")
    assert (r0["family"], r0["tag"], r0["infection"], r0["application"], r0["protocol"], r0["version"]) == (
        "emotet", "takedown-x", "emotet", "http", "tcp", "HTTP/1.1")
    assert r0["severity"] == default_registry().get("event4_sinkhole_http").default_severity
    assert r0["ssl_servername"] is None and r0["ssl_cipher"] is None
    assert rows[1]["family"] == "emotet"
    assert (rows[2]["http_host"], rows[2]["family"], rows[2]["tag"]) == ("unknown.test", "qakbot", "takedown-a")
    assert rows[3]["http_host"] is None and rows[3]["family"] == "qakbot"
    assert (rows[4]["version"], rows[4]["family"]) == ("HTTP/1.0", "emotet")


def test_https_records_sni_and_cipher(tmp_path, cert_files):
    cert, key = cert_files
    bg, _, cfg = _start(tmp_path, https_listen=[f"{LO}:0"], tls_cert=str(cert), tls_key=str(key))
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection(LO, bg.port("https"), timeout=5, context=ctx)
        # http.client sends SNI = the host it connects to; use a raw TLS socket to choose the SNI.
        c.close()
        for sni, host in (("api.tls-c2.example", "other.test"), ("unknown.test", "evil-c2.example")):
            with socket.create_connection((LO, bg.port("https")), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni) as s:
                    s.sendall(f"GET /tls HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                    assert _recv_all(s, time.monotonic() + 5).startswith(b"HTTP/1.1 200 OK")
        # Plain HTTP on the other listener still works next to HTTPS.
        c = http.client.HTTPConnection(LO, bg.port("http"), timeout=5)
        c.request("GET", "/plain")
        assert c.getresponse().status == 200
        c.close()
    finally:
        bg.stop()
    rows = _rows(cfg)
    assert [(r["application"], r["ssl_servername"], r["http_host"], r["family"]) for r in rows] == [
        ("https", "api.tls-c2.example", "other.test", "trickbot"),  # Host unknown: SNI decides
        ("https", "unknown.test", "evil-c2.example", "emotet"),  # Host comes first
        ("http", None, f"{LO}", "qakbot"),
    ]
    assert rows[0]["ssl_cipher"] and rows[0]["ssl_cipher"] == rows[1]["ssl_cipher"]


def test_bad_certificate_is_a_config_error(tmp_path, cert_files):
    from herald.errors import ConfigError

    cert, _ = cert_files
    wrong_key = tmp_path / "wrong.pem"
    wrong_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cfg = load_sinkhole_config(sinkhole_settings(tmp_path, {"https_listen": [f"{LO}:0"], "tls_cert": str(cert),
                                                            "tls_key": str(wrong_key)}))
    with pytest.raises(ConfigError, match="tls_cert"):
        HttpSinkhole(cfg, EventBatcher(cfg.inbox, "x", 10, 5))


def test_configured_response(tmp_path):
    bg, _, cfg = _start(tmp_path, http_status=404, http_body="gone", http_content_type="text/html")
    try:
        c = http.client.HTTPConnection(LO, bg.port("http"), timeout=5)
        c.request("GET", "/x", headers={"Host": "evil-c2.example"})
        r = c.getresponse()
        assert (r.status, r.reason, r.getheader("Content-Type"), r.read()) == (404, "Not Found", "text/html", b"gone")
        c.request("HEAD", "/x", headers={"Host": "evil-c2.example"})
        r = c.getresponse()
        assert (r.status, r.getheader("Content-Length"), r.read()) == (404, "4", b"")
        c.close()
    finally:
        bg.stop()
    assert len(_rows(cfg)) == 2


def test_slowloris_and_idle_connections_are_closed(tmp_path):
    bg, server, cfg = _start(tmp_path, header_timeout=1.0, idle_timeout=1.0)
    port = bg.port("http")
    try:
        t0 = time.monotonic()
        with socket.create_connection((LO, port), timeout=0.2) as slow, \
                socket.create_connection((LO, port), timeout=0.2) as idle:
            slow.sendall(b"GET / HTTP/1.1\r\n")
            closed = False
            for i in range(40):  # one header byte every 0.1 s, never finishing the header
                try:
                    slow.sendall(b"X")
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                try:
                    if slow.recv(100) == b"":
                        closed = True
                        break
                except socket.timeout:
                    pass
            assert closed, "slowloris connection was not closed"
            assert time.monotonic() - t0 < 3.0
            assert _recv_all(idle, time.monotonic() + 2) == b""  # idle connection closed without a byte
        # The server still answers.
        c = http.client.HTTPConnection(LO, port, timeout=5)
        c.request("GET", "/ok", headers={"Host": "evil-c2.example"})
        assert c.getresponse().status == 200
        c.close()
    finally:
        bg.stop()
    assert [r["http_url"] for r in _rows(cfg)] == ["/ok"]
    assert server.stats["timeouts"] == 2


def test_huge_headers_bad_requests_and_large_bodies(tmp_path):
    bg, server, cfg = _start(tmp_path, max_header_bytes=4096, max_body_bytes=1000)
    port = bg.port("http")
    try:
        def exchange(data: bytes) -> bytes:
            with socket.create_connection((LO, port), timeout=5) as s:
                try:
                    s.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return _recv_all(s, time.monotonic() + 5)

        huge = b"GET /big HTTP/1.1\r\nHost: evil-c2.example\r\n" + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
        assert exchange(huge).startswith(b"HTTP/1.1 431 ")
        many = b"GET /many HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 90) for i in range(100)) + b"\r\n"
        assert exchange(many).startswith(b"HTTP/1.1 431 ")
        assert exchange(b"NOT-HTTP\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert exchange(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert exchange(b"POST / HTTP/1.1\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n").startswith(
            b"HTTP/1.1 400 ")
        big = exchange(b"POST /upload HTTP/1.1\r\nHost: evil-c2.example\r\nContent-Length: 100000\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 413 ")
        chunks = exchange(b"POST /chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"3e8\r\n"
                          + b"z" * 1000 + b"\r\n1\r\nz\r\n0\r\n\r\n")
        assert chunks.startswith(b"HTTP/1.1 413 ")  # 1001 bytes in chunks
        assert exchange(b"POST /badchunk HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").startswith(
            b"HTTP/1.1 400 ")
    finally:
        bg.stop()
    # Requests with a complete, valid header are bots calling in, whatever their body.
    assert [r["http_url"] for r in _rows(cfg)] == ["/upload", "/chunks", "/badchunk"]
    assert server.stats["rejected"] == 8


def test_connection_limit_per_client(tmp_path):
    bg, server, cfg = _start(tmp_path, max_connections_per_client=2)
    port = bg.port("http")
    try:
        a = socket.create_connection((LO, port), timeout=2)
        b = socket.create_connection((LO, port), timeout=2)
        time.sleep(0.2)
        with socket.create_connection((LO, port), timeout=2) as c:
            assert _recv_all(c, time.monotonic() + 2) == b""  # closed at once
        a.sendall(b"GET /a HTTP/1.1\r\nHost: evil-c2.example\r\n\r\n")
        assert a.recv(100).startswith(b"HTTP/1.1 200")
        a.close()
        b.close()
    finally:
        bg.stop()
    assert server.stats["refused_connections"] == 1
    assert len(_rows(cfg)) == 1


# -- the sensor process ------------------------------------------------------------------------


def _spawn(tmp_path: Path, repo_root: Path, batch_rows: int) -> tuple[subprocess.Popen, int]:
    toml = tmp_path / "herald.toml"
    toml.write_text(
        f'[paths]\ninbox = "inbox"\n[sinkhole]\nsensor_name = "proc"\nhttp_listen = ["{LO}:0"]\n'
        f'batch_rows = {batch_rows}\nbatch_seconds = 600\n'
        'http_rate_per_client = 100000\n'  # these tests send requests as fast as they can
        '[[sinkhole.domains]]\nname = "evil-c2.example"\nfamily = "emotet"\ntag = "takedown-x"\n'
    )
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.Popen([sys.executable, "-m", "herald.cli", "sinkhole", "http", "--config", str(toml)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    line = proc.stdout.readline()
    if not line.startswith(f"listening http {LO} "):
        proc.kill()
        raise AssertionError(line + proc.stderr.read())
    return proc, int(line.split()[-1])


def test_process_sigterm_stores_exactly_every_request(tmp_path, repo_root):
    proc, port = _spawn(tmp_path, repo_root, batch_rows=50)
    n = 137
    try:
        c = http.client.HTTPConnection(LO, port, timeout=5)
        for i in range(n):
            c.request("GET", f"/r/{i}", headers={"Host": "evil-c2.example"})
            assert c.getresponse().read() == b""
        # Keep the connection open: shutdown must not wait for it or lose its rows.
        assert count_rows(tmp_path / "inbox") == 100  # two full batches so far
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    rows = read_inbox(tmp_path / "inbox", "event4_sinkhole_http").to_pylist()
    assert sorted(r["http_url"] for r in rows) == sorted(f"/r/{i}" for i in range(n))
    assert {r["family"] for r in rows} == {"emotet"}


def test_process_kill_9_loses_at_most_one_batch(tmp_path, repo_root):
    batch = 40
    proc, port = _spawn(tmp_path, repo_root, batch_rows=batch)
    answered = [0, 0]
    stop = threading.Event()

    def client(k: int) -> None:
        try:
            c = http.client.HTTPConnection(LO, port, timeout=5)
            for i in range(100_000):
                if stop.is_set():
                    return
                c.request("GET", f"/k{k}/{i}", headers={"Host": "evil-c2.example"})
                c.getresponse().read()
                answered[k] += 1
        except (OSError, http.client.HTTPException):
            return  # the server died

    threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 15
        while sum(answered) < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sent = sum(answered)
    assert sent > 2 * batch  # at least two batches went through before the kill
    stored = count_rows(tmp_path / "inbox")
    read_inbox(tmp_path / "inbox")  # every file is whole and has the right schema
    # A request is recorded before it is answered; at most one request per client was in flight.
    assert sent - batch <= stored <= sent + len(threads)
    assert stored % batch == 0  # only whole batches reach the disk (no time flush within 600 s)


def test_expect_100_continue_and_ipv6_client_rows(tmp_path):
    bg, server, cfg = _start(tmp_path, max_body_bytes=1000)
    try:
        with socket.create_connection((LO, bg.port("http")), timeout=5) as s:
            s.sendall(b"POST /up HTTP/1.1\r\nHost: evil-c2.example\r\nContent-Length: 10\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before the body is sent
            s.sendall(b"0123456789")
            assert s.recv(100).startswith(b"HTTP/1.1 200 OK\r\n")
        # IPv6 clients cannot be reached on 127.0.0.1: record one directly to check the type choice.
        bg.call(lambda: server._record("http", "2001:db8::5", 4444, "2001:db8::1", 80, None, None, "/v6",
                                       "HTTP/1.1", {"host": "evil-c2.example"}))
    finally:
        bg.stop()
    assert [r["http_url"] for r in _rows(cfg)] == ["/up"]
    [v6] = read_inbox(cfg.inbox, "event6_sinkhole_http").to_pylist()
    assert (v6["src_ip"], v6["src_port"], v6["family"]) == ("2001:db8::5", 4444, "emotet")


@pytest.mark.parametrize("value", ["\u00b2", "-1", "1e3", "+5", "0x10", "1, 1", "\u0663", "9" * 5000])
def test_malformed_content_length_gets_400_not_a_traceback(tmp_path, value, caplog):
    bg, server, cfg = _start(tmp_path, max_body_bytes=1000)
    port = bg.port("http")
    try:
        with socket.create_connection((LO, port), timeout=5) as s:
            s.sendall(f"POST /cl HTTP/1.1\r\nHost: evil-c2.example\r\nContent-Length: {value}\r\n"
                      "Expect: 100-continue\r\n\r\n".encode())
            resp = _recv_all(s, time.monotonic() + 5)
    finally:
        bg.stop()
    want = b"HTTP/1.1 413 " if value.isascii() and value.isdigit() else b"HTTP/1.1 400 "
    assert resp.startswith(want), resp
    assert "Traceback" not in caplog.text and "failed" not in caplog.text
    assert server.stats["rejected"] == 1
    assert [r["http_url"] for r in _rows(cfg)] == ["/cl"]  # the bot called in: recorded


def test_per_client_request_rate_limit_answers_429_and_records_only_allowed_requests(tmp_path):
    bg, server, cfg = _start(tmp_path, http_rate_per_client=0.001, http_rate_burst=3)
    port = bg.port("http")
    statuses = []
    try:
        for i in range(5):
            with socket.create_connection((LO, port), timeout=5) as s:
                s.sendall(f"GET /r{i} HTTP/1.1\r\nHost: evil-c2.example\r\nConnection: close\r\n\r\n"
                          .encode())
                resp = _recv_all(s, time.monotonic() + 5)
            statuses.append(int(resp.split(b" ", 2)[1]))
            if statuses[-1] == 429:
                assert b"Retry-After: 1\r\n" in resp and b"Connection: close" in resp
    finally:
        bg.stop()
    # a burst of 3, then (refill 1 per 1000 s) every further request is refused
    assert statuses == [200, 200, 200, 429, 429]
    assert server.stats["rate_limited"] == 2 and server.stats["requests"] == 3
    assert [r["http_url"] for r in _rows(cfg)] == ["/r0", "/r1", "/r2"]


def test_http_rate_limit_configuration(tmp_path):
    from herald.errors import ConfigError

    base = {"sensor_name": "t1", "http_listen": [f"{LO}:0"]}
    cfg = load_sinkhole_config(sinkhole_settings(tmp_path, base))
    assert (cfg.http_rate_per_client, cfg.http_rate_burst) == (10.0, 20.0)
    cfg = load_sinkhole_config(sinkhole_settings(tmp_path, {**base, "http_rate_per_client": 4}))
    assert cfg.http_rate_burst == 8.0
    with pytest.raises(ConfigError, match="http_rate_per_client"):
        load_sinkhole_config(sinkhole_settings(tmp_path, {**base, "http_rate_per_client": 0}))
