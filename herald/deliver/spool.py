"""The spool of built messages and their OpenPGP protection.

Built messages are spooled under ``<data>/mail/<day>/``: ``<key>.hdr`` (top-level headers),
``<key>.entity`` (the unprotected MIME content) and ``<key>.eml`` (the exact bytes that are sent,
signed and possibly encrypted).  :func:`protect` signs (and encrypts to the recipient's key) an
entity, or refuses when a key on file cannot be used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from herald.deliver.pgp import KeyUnusable, Signer
from herald.deliver.settings import DeliverySettings
from herald.errors import HeraldError


class OutboxError(HeraldError):
    """An outbox operation is not possible (unknown id, wrong state)."""


def spool_key(message_id: str) -> str:
    """The spool file name stem of a message: 32 hex digits of the SHA-256 of its Message-ID."""
    return hashlib.sha256(message_id.encode()).hexdigest()[:32]


def signer_for(ds: DeliverySettings) -> Signer | None:
    """The ``[pgp]`` signer, or ``None`` when OpenPGP is off.

    Raises:
        PgpError: the signing key is not usable.
    """
    return Signer(ds.pgp) if ds.pgp.enabled else None


def protect(ds: DeliverySettings, signer: Signer | None, entity: bytes,
            fingerprint: str | None) -> tuple[bytes, str]:
    """``(protected entity, protection)``: signed, encrypted to the recipient's key, or as is.

    Raises:
        KeyUnusable: the recipient has a key on file that cannot be used (or PGP is off).
        PgpError: signing failed.
    """
    if fingerprint:
        if signer is None:
            raise KeyUnusable(f"the recipient has OpenPGP key {fingerprint} on file but [pgp] is not "
                              f"configured: not sending unencrypted", fingerprint)
        return signer.sign_encrypt(entity, fingerprint), "encrypted"
    if signer is not None:
        return signer.sign(entity), "signed"
    return entity, "none"


def spool_paths(ds: DeliverySettings, day: str, message_id: str) -> tuple[Path, Path, Path]:
    """``(<key>.hdr, <key>.entity, <key>.eml)`` of a message under ``<data>/mail/<day>/``."""
    base = ds.spool / day / spool_key(message_id)
    return base.with_suffix(".hdr"), base.with_suffix(".entity"), base.with_suffix(".eml")
