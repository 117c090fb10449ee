"""OpenPGP protection of messages: PGP/MIME signing and sign+encrypt (RFC 3156), with GnuPG.

- *Sign* (RFC 3156 section 5): the content entity, in canonical form (CRLF line endings, 7-bit
  transfer encodings — :mod:`herald.deliver.compose` produces it that way), is signed with a
  detached, ASCII-armoured signature over exactly those bytes; the result is a
  ``multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"`` entity whose first
  part is the unchanged content entity and whose second part is the signature.
- *Sign and encrypt* (RFC 3156 section 6.2, the combined method): the content entity is signed and
  encrypted in one OpenPGP message to the recipient's key; the result is a
  ``multipart/encrypted; protocol="application/pgp-encrypted"`` entity with the
  ``Version: 1`` control part and the armoured ciphertext.

The recipient's key is named by the full fingerprint on file; Herald trusts that fingerprint (an
operator verified it) rather than the keyring's web of trust.  A key that is missing, expired,
revoked or has no usable encryption subkey raises :class:`KeyUnusable`, and the message is held.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from herald.deliver.settings import PgpSettings
from herald.errors import HeraldError

_FPR_RE = re.compile(r"^[0-9A-F]{40}$|^[0-9A-F]{64}$")

#: GnuPG digest algorithm numbers (RFC 4880 section 9.4) -> micalg names (RFC 3156 section 5).
_MICALG = {"2": "pgp-sha1", "8": "pgp-sha256", "9": "pgp-sha384", "10": "pgp-sha512", "11": "pgp-sha224"}


class PgpError(HeraldError):
    """OpenPGP signing or encryption failed (GnuPG missing, signing key unusable, bad passphrase)."""


class KeyUnusable(PgpError):
    """The recipient's key cannot be used: missing, expired, revoked, or no encryption subkey.

    Attributes:
        fingerprint: the key on file.
    """

    def __init__(self, message: str, fingerprint: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


def normalize_fingerprint(fpr: str) -> str:
    """Upper-case hex fingerprint without spaces or ``0x``."""
    return re.sub(r"\s+", "", fpr).upper().removeprefix("0X")


def _boundary(kind: str, data: bytes) -> str:
    # Deterministic, and cannot occur in base64/quoted-printable/armour text (contains '=_').
    return f"=_herald-{kind}-{hashlib.sha256(data).hexdigest()[:24]}"


@dataclass
class Signer:
    """GnuPG with the configured home and signing key.

    Args:
        settings: the ``[pgp]`` table.

    Raises:
        PgpError: python-gnupg or the ``gpg`` program is not available.
    """

    settings: PgpSettings

    def __post_init__(self) -> None:
        try:
            import gnupg
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise PgpError("python-gnupg is not installed") from exc
        try:
            self.gpg = gnupg.GPG(gnupghome=str(self.settings.gnupghome))
        except (OSError, ValueError) as exc:
            raise PgpError(f"cannot run GnuPG with home {self.settings.gnupghome}: {exc}") from exc
        self.gpg.encoding = "utf-8"
        self._passphrase: str | None = None
        self._passphrase_read = False

    def passphrase(self) -> str | None:
        """The signing key's passphrase (read once)."""
        if not self._passphrase_read:
            self._passphrase = self.settings.passphrase()
            self._passphrase_read = True
        return self._passphrase

    def key_problem(self, fingerprint: str, need: str, now: datetime | None = None) -> str | None:
        """Why the key ``fingerprint`` cannot be used for ``need`` (``"E"`` encrypt, ``"S"`` sign),
        or ``None`` when it can.  Checks presence, revocation, expiry and capability."""
        fpr = normalize_fingerprint(fingerprint)
        if not _FPR_RE.match(fpr):
            return f"{fingerprint!r} is not a full OpenPGP fingerprint (40 or 64 hex digits)"
        keys = self.gpg.list_keys(secret=(need == "S"), keys=[fpr])
        key = next((k for k in keys if k.get("fingerprint", "").upper() == fpr), None)
        if key is None:
            where = "secret keyring" if need == "S" else "keyring"
            return f"no OpenPGP key {fpr} in the {where} ({self.settings.gnupghome})"
        if need == "S":
            # Secret-key listings carry no validity; the public listing does.
            pub = next((k for k in self.gpg.list_keys(keys=[fpr])
                        if k.get("fingerprint", "").upper() == fpr), key)
            key = pub
        trust = key.get("trust", "")
        now = now or datetime.now(timezone.utc)
        expires = key.get("expires") or ""
        if trust == "r":
            return f"OpenPGP key {fpr} is revoked"
        if trust == "e" or (expires and int(expires) <= now.timestamp()):
            when = datetime.fromtimestamp(int(expires), timezone.utc).strftime("%Y-%m-%d") if expires else "?"
            return f"OpenPGP key {fpr} expired on {when}"
        if need not in key.get("cap", ""):
            what = "encryption" if need == "E" else "signing"
            return f"OpenPGP key {fpr} has no usable {what} (sub)key (expired or revoked subkeys?)"
        return None

    def check_recipient(self, fingerprint: str) -> None:
        """Raise :class:`KeyUnusable` unless ``fingerprint`` can be encrypted to."""
        problem = self.key_problem(fingerprint, "E")
        if problem:
            raise KeyUnusable(problem, normalize_fingerprint(fingerprint))

    def check_signing_key(self) -> None:
        """Raise :class:`PgpError` unless the signing key is present and valid (checked once per
        :class:`Signer`: one pass of the sender is short next to a key's lifetime)."""
        if getattr(self, "_signing_ok", False):
            return
        problem = self.key_problem(self.settings.signing_key or "", "S")
        if problem:
            raise PgpError(f"signing key: {problem}")
        self._signing_ok = True

    def sign(self, entity: bytes) -> bytes:
        """The ``multipart/signed`` entity over ``entity`` (RFC 3156 section 5).

        Raises:
            PgpError: the signing key is unusable or GnuPG failed.
        """
        self.check_signing_key()
        res = self.gpg.sign(entity, keyid=self.settings.signing_key, passphrase=self.passphrase(),
                            detach=True, binary=False, extra_args=["--digest-algo", "SHA256"])
        if not res or not res.data:
            raise PgpError(f"signing failed: {res.status or res.stderr.strip()[-300:]}")
        micalg = _MICALG.get(str(res.hash_algo), "pgp-sha256")
        sig = res.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        b = _boundary("signed", entity + sig)
        return (
            f'Content-Type: multipart/signed; micalg={micalg};\r\n'
            f' protocol="application/pgp-signature"; boundary="{b}"\r\n'
            f"\r\n"
            f"This is an OpenPGP/MIME signed message (RFC 3156).\r\n"
            f"--{b}\r\n").encode() + entity + (
            f"\r\n--{b}\r\n"
            f'Content-Type: application/pgp-signature; name="signature.asc"\r\n'
            f"Content-Description: OpenPGP digital signature\r\n"
            f'Content-Disposition: attachment; filename="signature.asc"\r\n'
            f"\r\n").encode() + sig + f"\r\n--{b}--\r\n".encode()

    def sign_encrypt(self, entity: bytes, fingerprint: str) -> bytes:
        """The ``multipart/encrypted`` entity: ``entity`` signed and encrypted to ``fingerprint``
        (RFC 3156 section 6.2, combined method).

        Raises:
            KeyUnusable: the recipient's key cannot be used.
            PgpError: the signing key is unusable or GnuPG failed.
        """
        fpr = normalize_fingerprint(fingerprint)
        self.check_recipient(fpr)
        self.check_signing_key()
        res = self.gpg.encrypt(entity, [fpr], sign=self.settings.signing_key,
                               passphrase=self.passphrase(), always_trust=True, armor=True,
                               extra_args=["--digest-algo", "SHA256"])
        if not res.ok:
            detail = res.status or res.stderr.strip()[-300:]
            if "invalid recipient" in (res.status or "") or "INV_RECP" in (res.stderr or ""):
                raise KeyUnusable(f"cannot encrypt to {fpr}: {detail}", fpr)
            raise PgpError(f"encryption failed: {detail}")
        ct = res.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        b = _boundary("encrypted", ct)
        return (
            f'Content-Type: multipart/encrypted;\r\n'
            f' protocol="application/pgp-encrypted"; boundary="{b}"\r\n'
            f"\r\n"
            f"This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n"
            f"--{b}\r\n"
            f"Content-Type: application/pgp-encrypted\r\n"
            f"Content-Description: PGP/MIME version identification\r\n"
            f"\r\n"
            f"Version: 1\r\n"
            f"\r\n"
            f"--{b}\r\n"
            f'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
            f"Content-Description: OpenPGP encrypted message\r\n"
            f'Content-Disposition: inline; filename="encrypted.asc"\r\n'
            f"\r\n").encode() + ct + f"\r\n--{b}--\r\n".encode()
