"""Models of the web's accounts: Reports API keys and their nonces, portal users."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from herald.store.models.base import Base, UTCDateTime, check_in, utcnow

USER_ROLES = ("recipient", "admin")


class ApiKeyRow(Base):
    """A Reports API key.  ``key_id`` is the public part; only a hash of the secret is stored.

    API secrets are long random strings, so a fast hash (SHA-256) is enough to make a stolen table
    useless; slow password hashes are for the human passwords in ``users``.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"),
                                              index=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Migration w001 (herald.accounts.apikeys): HMAC verification needs the secret itself, so it is kept
    # encrypted with the server key (never in the database in clear, never in the TOML).
    label: Mapped[str | None] = mapped_column(String(200))
    secret_enc: Mapped[str | None] = mapped_column(Text)
    #: The previous secret stays valid until ``prev_valid_until`` after a rotation.
    prev_secret_enc: Mapped[str | None] = mapped_column(Text)
    prev_secret_hash: Mapped[str | None] = mapped_column(String(255))
    prev_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Opt-in: requests must carry a fresh ``timestamp`` and a never-seen ``nonce``.
    replay_protection: Mapped[bool] = mapped_column(Boolean, default=False,
                                                    server_default=sa.false())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiNonceRow(Base):
    """A nonce seen on a replay-protected API key (migration w001); kept a few minutes."""

    __tablename__ = "api_nonces"
    __table_args__ = (UniqueConstraint("key_id", "nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(128))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class UserRow(Base):
    """A portal login (the web code is not written yet; this is its table)."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(check_in("role", USER_ROLES), name="role"),
        # A recipient-role user acts for exactly one recipient.
        CheckConstraint("role = 'admin' OR recipient_id IS NOT NULL", name="recipient"),
        CheckConstraint("failed_attempts >= 0", name="failed_attempts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    #: Argon2id PHC string; never the password.
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(128))
    #: TOTP secret encrypted with the server key (migration w001); ``totp_secret`` stays unused.
    totp_secret_enc: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16), default="recipient")
    recipient_id: Mapped[int | None] = mapped_column(
        ForeignKey("recipients.id", ondelete="CASCADE"), index=True)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Migration w002: incremented on logout; part of the session version (herald.accounts.users).
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Migration w002: RFC 6238 time step of the last accepted TOTP code (each code works once).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
