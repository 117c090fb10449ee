"""The spool of built messages (``<data>/mail/<day>/<key>.hdr``, ``.entity``, ``.eml``) and the
OpenPGP protection of a message's entity before it is spooled."""

from __future__ import annotations

import hashlib
from pathlib import Path

from herald.deliver.pgp import KeyUnusable, Signer
from herald.deliver.settings import DeliverySettings



def spool_key(message_id: str) -> str:
    """The spool file name of a message: 32 hex digits of the SHA-256 of its ``Message-ID``."""
    return hashlib.sha256(message_id.encode()).hexdigest()[:32]


def spool_paths(ds: DeliverySettings, day: str, message_id: str) -> tuple[Path, Path, Path]:
    """``(headers, entity, eml)`` paths of a message in the spool: ``<spool>/<day>/<key>.hdr``,
    ``.entity`` and ``.eml`` (see :mod:`herald.deliver.outbox`)."""
    base = ds.spool / day / spool_key(message_id)
    return base.with_suffix(".hdr"), base.with_suffix(".entity"), base.with_suffix(".eml")


def signer_for(ds: DeliverySettings) -> Signer | None:
    """The OpenPGP signer of the ``[pgp]`` settings, or ``None`` when PGP is off."""
    return Signer(ds.pgp) if ds.pgp.enabled else None


def protect(ds: DeliverySettings, signer: Signer | None, entity: bytes,
             fingerprint: str | None) -> tuple[bytes, str]:
    """``(protected entity, protection)``: ``entity`` signed and encrypted to ``fingerprint``
    (``"encrypted"``), signed only (``"signed"``) or unchanged (``"none"``).

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

