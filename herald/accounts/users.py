"""Portal users: Argon2id passwords, lockout after repeated failures, optional TOTP.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106).  After
:data:`MAX_FAILURES` wrong passwords in a row an account is locked for :data:`LOCKOUT`; a locked
account refuses even the right password until then.  TOTP secrets (RFC 6238, pyotp) are encrypted
with the server key like API secrets.  A TOTP code is accepted within one time step of drift
(±30 s) and only once: the step of the last accepted code is stored and no code of that step or an
earlier one is accepted again (RFC 6238 §5.2).  Logins, failures, lockouts and changes are audited.

Sessions end on the server: a session carries the user's *session version* (a digest of the
password hash, the TOTP secret and ``session_generation``); :func:`end_sessions` (logout)
increments the generation, so every earlier session cookie is refused from then on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError

from herald.accounts.apikeys import find_recipient
from herald.crypto import InvalidToken, ServerKey
from herald.errors import ConfigError
from herald.store import audit
from herald.store.db import USER_ROLES, Database, NotFound, RecipientRow, UserRow, utcnow

#: Consecutive failures before a lockout.
MAX_FAILURES = 5
#: How long a lockout lasts.
LOCKOUT = timedelta(minutes=15)
#: Shortest password accepted.
MIN_PASSWORD = 10

_TOTP_LABEL = "totp-secret"
_hasher = PasswordHasher()
_dummy: list[str] = []


def _dummy_hash() -> str:
    """A hash verified against when the e-mail is unknown, so timing does not reveal which
    accounts exist (made on first use: hashing costs tens of milliseconds)."""
    if not _dummy:
        _dummy.append(_hasher.hash(secrets.token_hex(16)))
    return _dummy[0]


@dataclass(frozen=True)
class User:
    """A portal user (never the password hash or TOTP secret)."""

    id: int
    email: str
    role: str
    recipient_id: int | None
    recipient: str | None
    totp_enabled: bool
    disabled: bool
    #: Changes when the password or TOTP changes or the user logs out: sessions made before are
    #: no longer valid.
    session_version: str = ""


#: Logins checked at the same time (each an Argon2id verification); more are refused as busy.
LOGIN_SLOTS = 4
_login_slots = threading.BoundedSemaphore(LOGIN_SLOTS)


class LoginError(Exception):
    """A login failed; :attr:`reason` is ``invalid``, ``locked``, ``totp_required``,
    ``totp_invalid`` or ``busy`` (too many logins being checked; try again).  Only ``totp_required`` may be shown as such to the person logging in."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _user(row: UserRow, name: str | None) -> User:
    version = hashlib.sha256(f"{row.password_hash}|{row.totp_secret_enc}|"
                             f"{row.session_generation or 0}".encode()).hexdigest()
    return User(row.id, row.email, row.role, row.recipient_id, name,
                row.totp_secret_enc is not None, bool(row.disabled), version[:24])


def _name(s, row: UserRow) -> str | None:
    if row.recipient_id is None:
        return None
    r = s.get(RecipientRow, row.recipient_id)
    return r.name if r else None


def add_user(db: Database, email: str, password: str, role: str, actor: str,
             recipient: int | str | None = None) -> User:
    """Create a portal user.

    Raises:
        ConfigError: bad role, short password, missing recipient for a recipient user, or the
            e-mail is taken.
        NotFound: no such recipient.
    """
    email = email.strip().lower()
    if "@" not in email:
        raise ConfigError(f"{email!r} is not an e-mail address")
    if role not in USER_ROLES:
        raise ConfigError(f"role must be one of {', '.join(USER_ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"password too short (at least {MIN_PASSWORD} characters)")
    if role == "recipient" and recipient is None:
        raise ConfigError("a recipient user needs --recipient")
    try:
        with db.session() as s:
            rid = None
            if recipient is not None:
                rid = find_recipient(s, recipient).id
            row = UserRow(email=email, password_hash=_hasher.hash(password), role=role,
                          recipient_id=rid, created_at=utcnow())
            s.add(row)
            s.flush()
            audit.record(s, actor, "user.add", "user", row.id, None,
                         {"email": email, "role": role, "recipient_id": rid})
            return _user(row, _name(s, row))
    except IntegrityError:
        raise ConfigError(f"user {email!r} already exists") from None


def get_user(db: Database, user_id: int) -> User | None:
    """The user with this id, or ``None``."""
    with db.session() as s:
        row = s.get(UserRow, int(user_id))
        return _user(row, _name(s, row)) if row else None


def list_users(db: Database) -> list[User]:
    """Every user, by e-mail."""
    with db.session() as s:
        return [_user(r, _name(s, r)) for r in s.scalars(sa.select(UserRow).order_by(UserRow.email))]


def authenticate(db: Database, server_key: ServerKey, email: str, password: str,
                 totp_code: str | None = None, ip: str | None = None,
                 now: datetime | None = None) -> User:
    """Check a login.

    Args:
        now: the time of the login (aware; default the system clock, UTC), for the TOTP code.

    Returns:
        the :class:`User` on success (failure counter reset, ``last_login_at`` set).

    Raises:
        LoginError: wrong e-mail or password (``invalid``, also for disabled users), account locked
            (``locked``), TOTP code needed (``totp_required``) or wrong (``totp_invalid``), or
            :data:`LOGIN_SLOTS` logins already being checked (``busy``).
    """
    # Each check is an Argon2id verification (argon2-cffi defaults: 64 MiB and
    # tens of ms of CPU)
    # holding a database connection: without a bound, a burst of logins (no account needed)
    # exhausts memory and the connection pool.  A login that finds every slot taken is refused
    # at once as ``busy``.
    if not _login_slots.acquire(blocking=False):
        raise LoginError("busy")
    try:
        user, error = _check_login(db, server_key, (email or "").strip().lower(), password,
                                   totp_code, ip, now or datetime.now(timezone.utc))
    finally:
        _login_slots.release()
    if error:
        raise LoginError(error)
    return user


def _check_login(db: Database, server_key: ServerKey, email: str, password: str,
                 totp_code: str | None, ip: str | None,
                 at: datetime) -> tuple[User | None, str | None]:
    # Failures are returned, not raised, so the failure counter and audit entry are committed.
    # The Argon2id work runs outside any database session: on SQLite a session holds the write
    # lock from its start (BEGIN IMMEDIATE), and a login must not block every other request for
    # the length of a password hash.  The user is read in one short session and the outcome
    # written in a second one, which re-reads the row.
    now = utcnow()
    with db.session() as s:
        row = s.scalars(sa.select(UserRow).where(UserRow.email == email)).one_or_none()
        seen = None if row is None else (row.id, row.password_hash, row.locked_until)
    if seen is None:
        try:
            _hasher.verify(_dummy_hash(), password or "")
        except VerificationError:
            pass
        audit.record(db, email or "?", "user.login_failed", "user", None, "unknown user",
                     {"ip": ip})
        return None, "invalid"
    uid, hashed, locked_until = seen
    if locked_until is not None and locked_until > now:
        audit.record(db, email, "user.login_failed", "user", uid, "locked", {"ip": ip})
        return None, "locked"
    try:
        ok = _hasher.verify(hashed, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    rehashed = _hasher.hash(password) if ok and _hasher.check_needs_rehash(hashed) else None
    with db.session() as s:
        row = s.get(UserRow, uid)
        if row is None:
            return None, "invalid"
        if row.locked_until is not None and row.locked_until > now:
            audit.record(s, email, "user.login_failed", "user", row.id, "locked", {"ip": ip})
            return None, "locked"
        if row.password_hash != hashed:
            ok = False  # the password changed while this one was checked: it is not current
        if not ok or row.disabled:
            row.failed_attempts = (row.failed_attempts or 0) + 1
            reason = "bad password" if ok is False else "disabled"
            if row.failed_attempts >= MAX_FAILURES:
                row.locked_until = now + LOCKOUT
                row.failed_attempts = 0
                audit.record(s, email, "user.locked", "user", row.id,
                             f"{MAX_FAILURES} failed logins", {"ip": ip, "until": row.locked_until})
            else:
                audit.record(s, email, "user.login_failed", "user", row.id, reason, {"ip": ip})
            return None, "invalid"
        if row.totp_secret_enc:
            if not totp_code:
                return None, "totp_required"
            step = _totp_step(server_key, row.totp_secret_enc, totp_code, at)
            if step is None or (row.totp_last_step is not None and step <= row.totp_last_step):
                row.failed_attempts = (row.failed_attempts or 0) + 1
                if row.failed_attempts >= MAX_FAILURES:
                    row.locked_until = now + LOCKOUT
                    row.failed_attempts = 0
                audit.record(s, email, "user.login_failed", "user", row.id, "bad TOTP code",
                             {"ip": ip})
                return None, "totp_invalid"
            row.totp_last_step = step
        if rehashed:
            row.password_hash = rehashed
        row.failed_attempts = 0
        row.locked_until = None
        row.last_login_at = now
        audit.record(s, email, "user.login", "user", row.id, None, {"ip": ip})
        return _user(row, _name(s, row)), None


#: Accepted drift of a TOTP code, in time steps (of 30 s) either side of now.
TOTP_DRIFT_STEPS = 1


def totp_match(secret: str, code: str, at: datetime) -> int | None:
    """The RFC 6238 time step (Unix seconds // 30) within :data:`TOTP_DRIFT_STEPS` of ``at``
    whose code is ``code`` (compared in constant time), else ``None``.  ``at`` is aware (UTC)."""
    code = str(code).strip()
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(at)
    found = None
    for step in range(now_step - TOTP_DRIFT_STEPS, now_step + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def _totp_step(server_key: ServerKey, enc: str, code: str, at: datetime) -> int | None:
    try:
        secret = server_key.decrypt(_TOTP_LABEL, enc)
    except InvalidToken:
        return None
    return totp_match(secret, code, at)


def new_totp_secret() -> str:
    """A random base32 TOTP secret."""
    return pyotp.random_base32()


def totp_uri(secret: str, email: str) -> str:
    """The ``otpauth://`` provisioning URI for authenticator apps."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="Herald")


def enable_totp(db: Database, server_key: ServerKey, user_id: int, secret: str, code: str,
                now: datetime | None = None) -> bool:
    """Turn TOTP on for a user once ``code`` proves the authenticator has ``secret``; the code's
    step counts as used (it cannot log in afterwards).

    Args:
        now: aware time of the request (default the system clock, UTC).

    Returns:
        ``False`` (and nothing changes) when the code is wrong.
    """
    step = totp_match(secret, code, now or datetime.now(timezone.utc))
    if step is None:
        return False
    with db.session() as s:
        row = s.get(UserRow, int(user_id))
        if row is None:
            raise NotFound(f"no user {user_id}")
        row.totp_secret_enc = server_key.encrypt(_TOTP_LABEL, secret)
        row.totp_last_step = step
        audit.record(s, row.email, "user.totp_enable", "user", row.id)
    return True


def end_sessions(db: Database, user_id: int, actor: str) -> None:
    """End every session of a user on the server (logout): the session generation is
    incremented, so earlier session cookies no longer match :attr:`User.session_version`.

    Raises:
        NotFound: no such user.
    """
    with db.session() as s:
        row = s.get(UserRow, int(user_id))
        if row is None:
            raise NotFound(f"no user {user_id}")
        row.session_generation = (row.session_generation or 0) + 1
        audit.record(s, actor, "user.logout", "user", row.id)


def set_password(db: Database, user_id: int, password: str, actor: str) -> None:
    """Replace a user's password (and clear any lockout).

    Raises:
        ConfigError: the password is too short.
        NotFound: no such user.
    """
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"password too short (at least {MIN_PASSWORD} characters)")
    with db.session() as s:
        row = s.get(UserRow, int(user_id))
        if row is None:
            raise NotFound(f"no user {user_id}")
        row.password_hash = _hasher.hash(password)
        row.failed_attempts, row.locked_until = 0, None
        audit.record(s, actor, "user.password", "user", row.id)
