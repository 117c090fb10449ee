"""Shared helpers for the delivery tests: a real SMTP server (aiosmtpd on 127.0.0.1, ephemeral
port) whose replies the test controls, a self-signed certificate, throw-away GnuPG homes, report
files and settings.  Imported by the tests of tests/deliver/ (and a few others); its fixture
(``gpg_keys``) is a pytest plugin registered in ``tests/conftest.py``."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import re
import socket
import ssl
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from herald.config import settings_from_dict
from herald.schema.registry import default_registry

DAY = "2026-11-30"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message_id(self) -> str:
        return message_from_bytes(self.data, policy=policy.default)["Message-ID"]


@dataclass
class Handler:
    """aiosmtpd handler whose behaviour a test sets.

    Attributes:
        rcpt_replies: address -> reply for RCPT (e.g. ``550 5.1.1 no such user``).
        data_replies: replies for successive DATA ends (``None`` = accept); when exhausted, accept.
        drop_after_data: close the connection after the data, without a reply (nothing stored).
        block_at: ``"MAIL"``, ``"RCPT"`` or ``"DATA"``: signal :attr:`reached` and wait for
            :attr:`proceed` (the test kills the client meanwhile).  At ``DATA`` the message is
            stored first, unless ``block_reply`` is a 4yz/5yz reply.
        block_reply: the reply given after a block (default accept).
    """

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str | None] = field(default_factory=list)
    drop_after_data: bool = False
    block_at: str | None = None
    block_nth: int = 1
    block_reply: str | None = None
    reached: threading.Event = field(default_factory=threading.Event)
    proceed: threading.Event = field(default_factory=threading.Event)
    received: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)

    def _blocking(self, stage: str) -> bool:
        """True at the ``block_nth`` occurrence of ``block_at`` (once)."""
        if self.block_at != stage:
            return False
        self.seen[stage] = self.seen.get(stage, 0) + 1
        return self.seen[stage] == self.block_nth

    async def _block(self, stage: str, decided: bool | None = None) -> None:
        if decided if decided is not None else self._blocking(stage):
            self.block_at = None  # once
            self.reached.set()
            await asyncio.get_running_loop().run_in_executor(None, self.proceed.wait, 30)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.commands.append(f"MAIL {address}")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        await self._block("MAIL")
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.commands.append(f"RCPT {address}")
        await self._block("RCPT")
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.commands.append("DATA")
        if self.drop_after_data:
            server.transport.abort()
            return "250 never sent"
        rec = Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                       session.ssl is not None
                       or server.transport.get_extra_info("ssl_object") is not None,
                       session.auth_data.login.decode() if session.auth_data else None)
        if self._blocking("DATA"):
            if self.block_reply is None or self.block_reply.startswith("2"):
                self.received.append(rec)
            await self._block("DATA", decided=True)
            return self.block_reply or f"250 2.0.0 queued as {len(self.received)}"
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if reply is not None:
                return reply
        self.received.append(rec)
        return f"250 2.0.0 queued as {len(self.received)}"

    def counts(self) -> Counter:
        """Message-ID -> number of times received."""
        return Counter(r.message_id for r in self.received)


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 and an ephemeral port, with :class:`Handler`."""

    def __init__(self, handler: Handler | None = None, host: str = "127.0.0.1", **kwargs: Any) -> None:
        self.handler = handler or Handler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname=host, port=self.port, **kwargs)

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.handler.proceed.set()
        self.controller.stop()


def authenticator(users: dict[str, str]):
    """An aiosmtpd authenticator accepting ``users`` (login -> password)."""
    def auth(server, session, envelope, mechanism, auth_data):
        ok = users.get(auth_data.login.decode()) == auth_data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data)
    return auth


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost``/``127.0.0.1`` made with cryptography:
    ``(cert.pem, key.pem)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Server-side TLS context for aiosmtpd."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# --- GnuPG ----------------------------------------------------------------------------------------

@dataclass
class Keys:
    """Throw-away GnuPG homes: Herald's (its secret signing key and recipients' public keys) and
    the recipient's (its secret key and Herald's public key)."""

    herald_home: Path
    rcpt_home: Path
    herald_fpr: str
    rcpt_fpr: str
    expired_fpr: str
    missing_fpr: str = "0123456789ABCDEF0123456789ABCDEF01234567"


def run_gpg(home: Path, *args: str, input: bytes | None = None) -> bytes:
    """Run ``gpg`` in the key home ``home`` (batch mode, empty passphrase) with ``args`` and
    ``input`` on stdin; its stdout.  Raises ``subprocess.CalledProcessError`` when gpg fails."""
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode",
                           "loopback", "--passphrase", "", *args], input=input,
                          check=True, capture_output=True).stdout


def fingerprint_of(home: Path, uid: str) -> str:
    """The fingerprint (40 hex digits) of the first key of ``home`` whose user id matches ``uid``."""
    out = run_gpg(home, "--with-colons", "--list-keys", uid).decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def make_keys(root: Path) -> Keys:
    """Generate the keys (ed25519 signing, cv25519 encryption, no protection; one key created in
    2020 that expired a day later)."""
    herald_home, rcpt_home = root / "herald", root / "rcpt"
    for h in (herald_home, rcpt_home):
        h.mkdir(mode=0o700)
    run_gpg(herald_home, "--quick-gen-key", "Herald Test <reports@herald.example>", "ed25519", "sign", "0")
    herald_fpr = fingerprint_of(herald_home, "reports@herald.example")
    run_gpg(rcpt_home, "--quick-gen-key", "ISP <abuse@cable-isp.example>", "ed25519", "sign,cert", "0")
    rcpt_fpr = fingerprint_of(rcpt_home, "abuse@cable-isp.example")
    run_gpg(rcpt_home, "--quick-add-key", rcpt_fpr, "cv25519", "encr", "0")
    run_gpg(herald_home, "--faked-system-time", "20200101T000000!", "--quick-gen-key",
         "Old <old@expired.example>", "ed25519", "sign,cert", "1d")
    expired_fpr = fingerprint_of(herald_home, "old@expired.example")
    run_gpg(herald_home, "--faked-system-time", "20200101T000100!", "--quick-add-key", expired_fpr,
         "cv25519", "encr", "1d")
    run_gpg(herald_home, "--import", input=run_gpg(rcpt_home, "--armor", "--export", rcpt_fpr))
    run_gpg(rcpt_home, "--import", input=run_gpg(herald_home, "--armor", "--export", herald_fpr))
    return Keys(herald_home, rcpt_home, herald_fpr, rcpt_fpr, expired_fpr)


@pytest.fixture(scope="session")
def gpg_keys(tmp_path_factory):
    """Session-wide throw-away keys (see :class:`Keys`); the agents are stopped afterwards."""
    keys = make_keys(tmp_path_factory.mktemp("gpg"))
    yield keys
    for h in (keys.herald_home, keys.rcpt_home):
        subprocess.run(["gpgconf", "--homedir", str(h), "--kill", "all"], capture_output=True)


def split_signed(raw: bytes) -> tuple[bytes, bytes]:
    """``(signed bytes, armoured signature)`` of a ``multipart/signed`` message, taken from the
    raw bytes as RFC 3156 section 5 prescribes (the first body part, its MIME headers included,
    without the CRLF before the next delimiter)."""
    m = re.search(rb'boundary="([^"]+)"', raw)
    b = b"--" + m.group(1)
    parts = raw.split(b"\r\n" + b + b"\r\n")
    assert len(parts) == 3, "expected two body parts"
    signed = parts[1]
    sig_part = parts[2].split(b"\r\n" + b + b"--")[0]
    sig = sig_part.split(b"\r\n\r\n", 1)[1]
    return signed, sig


# --- reports and settings ---------------------------------------------------------------------------

RECIPIENTS = [
    {"name": "Example Cable ISP", "email": "abuse@cable-isp.example", "kind": "network_owner",
     "asns": [7922]},
    {"name": "CERT.at", "email": "reports@cert.at.example", "kind": "national_cert",
     "countries": ["AT"]},
    {"name": "Old Key Org", "email": "noc@expired.example", "kind": "network_owner",
     "asns": [64500]},
]


def make_report(root: Path, recipient: str, type_name: str = "scan_http", rows: int = 2,
                salt: str = "") -> dict:
    """A report CSV of ``type_name`` with ``rows`` events and its run-summary dict."""
    rtype = default_registry().get(type_name)
    cols = list(rtype.columns)
    lines = [",".join(f'"{c}"' for c in cols)]
    for i in range(rows):
        vals = {"timestamp": f"{DAY} 01:02:{i:02d}", "ip": f"192.0.2.{i + 1}", "src_ip": f"192.0.2.{i + 1}",
                "port": "8080", "src_port": "40000", "protocol": "tcp", "tag": f"http{salt}",
                "asn": "7922", "src_asn": "7922", "geo": "AT", "src_geo": "AT", "severity": "medium",
                "infection": "virut", "dst_ip": "198.51.100.7", "dst_port": "80"}
        lines.append(",".join(vals.get(c, "") for c in cols))
    data = ("\n".join(lines) + "\n").encode()
    slug = re.sub(r"[^a-z0-9]+", "_", recipient.lower()).strip("_")
    path = root / "reports" / DAY / slug / f"{DAY}-{type_name}-{slug}-asn.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"recipient": recipient, "kind": "network_owner", "type": type_name, "rows": rows,
            "path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "message": "",
            "tlp": "AMBER"}


def make_settings(root: Path, db_url: str, *, smtp: dict | None = None, pgp: dict | None = None,
                  mail: dict | None = None, recipients: list[dict] | None = None):
    """Settings rooted in ``root`` with the given delivery tables; returns ``(settings, raw)``."""
    raw: dict[str, Any] = {
        "paths": {"inbox": "inbox", "data": "data", "reports": "reports", "outbox": "outbox"},
        "report": {"tlp": "AMBER", "sender": "reports@herald.example"},
        "database": {"url": db_url},
        "recipients": [dict(r) for r in (recipients or RECIPIENTS)],
    }
    if smtp is not None:
        raw["smtp"] = {"host": "127.0.0.1", "security": "none", "rate_per_second": 0,
                       "retry_base": 0, "timeout": 10, **smtp}
    if pgp is not None:
        raw["pgp"] = pgp
    if mail is not None:
        raw["mail"] = mail
    return settings_from_dict(raw, base=root), raw
