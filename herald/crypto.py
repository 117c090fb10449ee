"""The server key and what is derived from it: secret encryption, download tokens, sessions.

HMAC-SHA256 verification of API requests needs each key's *secret*, so Herald cannot keep only a
hash of it the way it does for passwords.  The secret is instead encrypted at rest (Fernet:
AES-128-CBC + HMAC-SHA256) with a key derived from the **server key**, which lives outside the
database and outside the TOML file:

1. ``HERALD_SECRET_KEY`` (environment; at least 32 characters), else
2. the file named by ``HERALD_SECRET_KEY_FILE``, else
3. ``<data>/secret.key``, created on first use with mode 0600 (32 random bytes, hex).

A stolen database alone therefore gives neither API secrets nor TOTP secrets.  Each use gets its
own sub-key, ``HMAC-SHA256(server key, label)``, so a download token can never be replayed as an
encrypted secret and vice versa.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from herald.errors import ConfigError

__all__ = ["ServerKey", "InvalidToken"]


class ServerKey:
    """The server key; :meth:`fernet` gives a purpose-bound encrypter.

    Args:
        material: the key bytes (at least 32).

    Raises:
        ConfigError: fewer than 32 bytes.
    """

    def __init__(self, material: bytes) -> None:
        if len(material) < 32:
            raise ConfigError("the server key must be at least 32 bytes (HERALD_SECRET_KEY)")
        self._material = material

    @classmethod
    def load(cls, data_dir: Path | None) -> "ServerKey":
        """The server key from the environment, a key file, or ``<data>/secret.key`` (created).

        Raises:
            ConfigError: no usable key and no data directory to create one in, or a short key.
        """
        env = os.environ.get("HERALD_SECRET_KEY")
        if env:
            return cls(env.encode())
        path = os.environ.get("HERALD_SECRET_KEY_FILE")
        if path:
            try:
                return cls(Path(path).read_bytes().strip())
            except OSError as exc:
                raise ConfigError(f"HERALD_SECRET_KEY_FILE {path}: {exc}") from None
        if data_dir is None:
            raise ConfigError("no server key: set HERALD_SECRET_KEY or HERALD_SECRET_KEY_FILE")
        key_file = Path(data_dir) / "secret.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting together never overwrite each other's key.
            try:
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32) + "\n")
        return cls(key_file.read_bytes().strip())

    def subkey(self, label: str) -> bytes:
        """32 bytes bound to ``label``: ``HMAC-SHA256(server key, label)``."""
        return hmac.new(self._material, label.encode(), hashlib.sha256).digest()

    def fernet(self, label: str) -> Fernet:
        """A Fernet encrypter whose key is :meth:`subkey` of ``label``."""
        return Fernet(base64.urlsafe_b64encode(self.subkey(label)))

    def encrypt(self, label: str, text: str) -> str:
        """Encrypt ``text`` for purpose ``label``; returns the Fernet token (ASCII)."""
        return self.fernet(label).encrypt(text.encode()).decode("ascii")

    def decrypt(self, label: str, token: str, ttl: int | None = None) -> str:
        """Decrypt a token of :meth:`encrypt`.

        Raises:
            InvalidToken: wrong key or purpose, tampered, or older than ``ttl`` seconds.
        """
        return self.fernet(label).decrypt(token.encode("ascii"), ttl=ttl).decode()
