"""Reports API keys: creation, verification of HMAC2 signatures, rotation, revocation.

A key has a public ``key_id`` (the ``apikey`` field of every request) and a secret.  The secret is
shown once, when created or rotated.  The database keeps its SHA-256 (``secret_hash``, to identify
it) and the secret encrypted with the server key (``secret_enc``, see :mod:`herald.crypto`),
because verifying ``HMAC2 = HMAC-SHA256(secret, body)`` needs the secret itself.

Rotation makes a new secret current and keeps the old one valid until ``prev_valid_until`` (the
grace period), so a client can switch without downtime.  Every change is audited.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from herald.crypto import InvalidToken, ServerKey
from herald.errors import ConfigError
from herald.store import audit
from herald.store.db import ApiKeyRow, ApiNonceRow, Database, NotFound, RecipientRow, utcnow

_SECRET_LABEL = "api-secret"
#: Default rotation grace period.
DEFAULT_GRACE = timedelta(days=7)
#: ``last_used_at`` is updated at most this often.
LAST_USED_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class KeyInfo:
    """An API key as shown to people (never the secret).

    Attributes:
        key_id: the public ``apikey``.
        recipient_id / recipient: its recipient.
        fingerprint: first 12 hex digits of the current secret's SHA-256.
        state: ``active``, ``revoked`` or ``expired``.
        rotating_until: end of the grace period of the previous secret, or ``None``.
    """

    key_id: str
    recipient_id: int
    recipient: str
    label: str | None
    fingerprint: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotating_until: datetime | None
    replay_protection: bool
    last_used_at: datetime | None
    state: str


@dataclass(frozen=True)
class NewKey:
    """A freshly created or rotated key: :attr:`secret` is shown once and never stored in clear."""

    key_id: str
    secret: str
    info: KeyInfo


@dataclass(frozen=True)
class Caller:
    """The recipient a verified request acts for."""

    key_id: str
    recipient_id: int
    recipient: str
    slug: str
    replay_protection: bool
    expires_at: datetime | None
    #: :func:`fingerprint` of the secret that signed the request (current or previous one)
    secret_fp: str = ""


def _hash(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def fingerprint(secret_hash: str) -> str:
    """The fingerprint of a stored secret hash (``sha256:<hex>``): the first 16 bytes of the
    secret's SHA-256, hex.  Download ids seal it, so they die with the secret that listed them."""
    return secret_hash.removeprefix("sha256:")[:32]


def _state(row: ApiKeyRow, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def _info(row: ApiKeyRow, name: str, now: datetime | None = None) -> KeyInfo:
    now = now or utcnow()
    rot = row.prev_valid_until if row.prev_valid_until and row.prev_valid_until > now else None
    return KeyInfo(row.key_id, row.recipient_id, name, row.label,
                   row.secret_hash.removeprefix("sha256:")[:12], row.created_at, row.expires_at,
                   row.revoked_at, rot, bool(row.replay_protection), row.last_used_at,
                   _state(row, now))


def find_recipient(s, ref: int | str) -> RecipientRow:
    """The recipient row of ``ref`` (an id, or digits of one, a name or a slug) in session ``s``.

    Raises:
        NotFound: no such recipient.
    """
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = s.get(RecipientRow, int(ref))
    else:
        row = s.scalars(sa.select(RecipientRow).where(
            sa.or_(RecipientRow.name == ref, RecipientRow.slug == ref))).first()
    if row is None:
        raise NotFound(f"no recipient {ref!r}")
    return row


def create_key(db: Database, server_key: ServerKey, recipient: int | str, actor: str,
               label: str | None = None, replay_protection: bool = False,
               expires_at: datetime | None = None) -> NewKey:
    """Create an API key for a recipient.

    Returns:
        :class:`NewKey` with the secret (the only time it is available in clear).

    Raises:
        NotFound: no such recipient.
    """
    key_id = secrets.token_hex(16)
    secret = secrets.token_urlsafe(32)
    with db.session() as s:
        rcpt = find_recipient(s, recipient)
        row = ApiKeyRow(recipient_id=rcpt.id, key_id=key_id, secret_hash=_hash(secret),
                        secret_enc=server_key.encrypt(_SECRET_LABEL, secret), label=label,
                        replay_protection=replay_protection, expires_at=expires_at,
                        created_at=utcnow())
        s.add(row)
        s.flush()
        audit.record(s, actor, "apikey.create", "apikey", key_id, None,
                     {"recipient": rcpt.name, "label": label,
                      "replay_protection": replay_protection})
        return NewKey(key_id, secret, _info(row, rcpt.name))


def list_keys(db: Database, recipient: int | str | None = None) -> list[KeyInfo]:
    """Every key (of one recipient, when given), oldest first."""
    stmt = sa.select(ApiKeyRow, RecipientRow.name).join(
        RecipientRow, RecipientRow.id == ApiKeyRow.recipient_id).order_by(ApiKeyRow.id)
    with db.session() as s:
        if recipient is not None:
            stmt = stmt.where(ApiKeyRow.recipient_id == find_recipient(s, recipient).id)
        now = utcnow()
        return [_info(r, name, now) for r, name in s.execute(stmt)]


def _get(s, key_id: str, recipient_id: int | None) -> ApiKeyRow:
    row = s.scalars(sa.select(ApiKeyRow).where(ApiKeyRow.key_id == key_id)).one_or_none()
    # A key of another recipient is reported exactly like a missing one.
    if row is None or (recipient_id is not None and row.recipient_id != recipient_id):
        raise NotFound(f"no API key {key_id!r}")
    return row


def revoke_key(db: Database, key_id: str, actor: str, reason: str | None = None,
               recipient_id: int | None = None) -> KeyInfo:
    """Revoke a key at once (both its secrets).  A no-op on a revoked key.

    Args:
        recipient_id: when given, the key must belong to this recipient (portal use).

    Raises:
        NotFound: no such key (or not the recipient's).
    """
    with db.session() as s:
        row = _get(s, key_id, recipient_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            row.prev_valid_until = None
            s.flush()
            audit.record(s, actor, "apikey.revoke", "apikey", key_id, reason,
                         {"recipient_id": row.recipient_id})
        return _info(row, s.get(RecipientRow, row.recipient_id).name)


def rotate_key(db: Database, server_key: ServerKey, key_id: str, actor: str,
               grace: timedelta = DEFAULT_GRACE, recipient_id: int | None = None) -> NewKey:
    """Give a key a new secret; the old one stays valid for ``grace``.

    Raises:
        NotFound: no such key (or not the recipient's).
        ConfigError: the key is revoked.
    """
    secret = secrets.token_urlsafe(32)
    with db.session() as s:
        row = _get(s, key_id, recipient_id)
        if row.revoked_at is not None:
            raise ConfigError(f"API key {key_id} is revoked; create a new one")
        now = utcnow()
        row.prev_secret_enc, row.prev_secret_hash = row.secret_enc, row.secret_hash
        row.prev_valid_until = now + grace
        row.secret_enc = server_key.encrypt(_SECRET_LABEL, secret)
        row.secret_hash = _hash(secret)
        s.flush()
        audit.record(s, actor, "apikey.rotate", "apikey", key_id, None,
                     {"recipient_id": row.recipient_id,
                      "previous_valid_until": row.prev_valid_until})
        return NewKey(key_id, secret, _info(row, s.get(RecipientRow, row.recipient_id).name, now))


def sign(secret: str, body: bytes) -> str:
    """The ``HMAC2`` header value: lowercase hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return hmac.new(secret.encode("latin-1"), body, hashlib.sha256).hexdigest()


_DUMMY = secrets.token_bytes(32)


def verify_request(db: Database, server_key: ServerKey, key_id: str, body: bytes,
                   signature: str) -> Caller | None:
    """The caller of a signed request, or ``None`` when the key or signature is not valid.

    A key is valid when it exists, is not revoked or expired, and its recipient is enabled.  The
    signature is compared in constant time against the current secret and, during a rotation's
    grace period, the previous one.  For an unknown key an HMAC is still computed, so response
    times do not tell which key ids exist.
    """
    signature = (signature or "").strip().lower()
    if not signature.isascii() or len(signature) > 256:
        # compare_digest refuses non-ASCII text (TypeError): such a header is simply wrong.
        signature = ""
    now = utcnow()
    with db.session() as s:
        row = s.scalars(sa.select(ApiKeyRow).where(ApiKeyRow.key_id == str(key_id))).one_or_none()
        if row is None or row.secret_enc is None:
            hmac.compare_digest(hmac.new(_DUMMY, body, hashlib.sha256).hexdigest(), signature)
            return None
        secrets_ = [(row.secret_enc, row.secret_hash)]
        if row.prev_secret_enc and row.prev_valid_until and row.prev_valid_until > now:
            secrets_.append((row.prev_secret_enc, row.prev_secret_hash or ""))
        signed_by = ""
        for enc, stored_hash in secrets_:
            try:
                secret = server_key.decrypt(_SECRET_LABEL, enc)
            except InvalidToken:
                continue
            # Every candidate is compared (no early exit), in constant time.
            if hmac.compare_digest(sign(secret, body), signature):
                signed_by = fingerprint(stored_hash)
        if not signed_by or _state(row, now) != "active":
            return None
        rcpt = s.get(RecipientRow, row.recipient_id)
        if rcpt is None or rcpt.disabled:
            return None
        # Record use at most every few minutes: a write per request would serialise the API on
        # SQLite and bloat PostgreSQL's WAL.
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
            row.last_used_at = now
        return Caller(row.key_id, rcpt.id, rcpt.name, rcpt.slug, bool(row.replay_protection),
                      row.expires_at, signed_by)


def current_fingerprint(db: Database, key_id: str) -> str | None:
    """:func:`fingerprint` of the current secret of API key ``key_id``; ``None``: no such key."""
    with db.session() as s:
        stored = s.scalars(sa.select(ApiKeyRow.secret_hash)
                           .where(ApiKeyRow.key_id == str(key_id))).one_or_none()
    return fingerprint(stored) if stored else None


def key_active(db: Database, key_id: str, recipient_id: int, secret_fp: str) -> bool:
    """``True`` when API key ``key_id`` exists, belongs to ``recipient_id``, is neither revoked nor
    expired, its recipient is enabled, and ``secret_fp`` (:func:`fingerprint`) names its current
    secret or its previous one during a rotation's grace period: download ids die with their key
    and with the secret that listed them.  Fingerprints are compared in constant time."""
    now = utcnow()
    with db.session() as s:
        row = s.scalars(sa.select(ApiKeyRow).where(ApiKeyRow.key_id == str(key_id))).one_or_none()
        if row is None or row.recipient_id != recipient_id or _state(row, now) != "active":
            return False
        live = [row.secret_hash]
        if row.prev_secret_hash and row.prev_valid_until and row.prev_valid_until > now:
            live.append(row.prev_secret_hash)
        given = str(secret_fp).encode("ascii", "replace")
        matched = False
        for stored in live:  # every candidate compared, no early exit
            matched |= hmac.compare_digest(fingerprint(stored).encode("ascii"), given)
        if not secret_fp or not matched:
            return False
        rcpt = s.get(RecipientRow, row.recipient_id)
        return rcpt is not None and not rcpt.disabled


def remember_nonce(db: Database, key_id: str, nonce: str, keep: timedelta) -> bool:
    """Record a nonce of a replay-protected key; ``False`` when it was seen before.

    Nonces older than ``keep`` are purged first (a request that old is refused on its timestamp).
    """
    from sqlalchemy.exc import IntegrityError

    now = utcnow()
    try:
        with db.session() as s:
            s.execute(sa.delete(ApiNonceRow).where(ApiNonceRow.seen_at < now - keep))
            s.add(ApiNonceRow(key_id=key_id, nonce=nonce, seen_at=now))
            s.flush()
    except IntegrityError:
        return False
    return True
