"""Where the event store lives: a local folder or an S3 prefix, and how to reach it.

Configuration (``[paths] events`` and ``[s3]`` of the TOML file)::

    [paths]
    events = "s3://herald-events/prod"   # default: "<data>/events" (a local folder)

    [s3]                                 # only read for an s3:// event store
    endpoint_override = "minio.example.org:9000"   # default: AWS
    scheme = "https"                     # or "http" (default "https")
    region = "eu-central-1"              # default: the AWS SDK's (AWS_DEFAULT_REGION, ...)

Credentials never come from the file: they are read from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and optionally ``AWS_SESSION_TOKEN``, the variables the AWS SDK and
pyarrow use) each time a file system is built, so they are never pickled into a Spark task or a
worker's arguments: an :class:`EventStore` is a plain value (the URI and the ``[s3]`` options).

The S3 file system is :class:`pyarrow.fs.S3FileSystem` (it ships inside pyarrow).  Paths inside an
S3 store are ``"s3://bucket/prefix/..."`` URIs (that is what :attr:`StoredInput.parquet
<herald.store.ingest.StoredInput>` and the input markers hold); inside a local store, absolute
file system paths, exactly as before this module existed.

This module imports pyarrow lazily (the configuration is read by commands that never touch the
event store) and imports nothing of Herald but :mod:`herald.errors`.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herald.errors import ConfigError

#: Keys of the ``[s3]`` section.
S3_KEYS = frozenset({"endpoint_override", "scheme", "region"})
#: Environment variables holding the S3 credentials (never the configuration file).
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
#: Bucket names S3 accepts (3-63 lower-case letters, digits, dots and hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: Keys that look like credentials: refused in ``[s3]`` with a pointer to the environment.
_SECRET_KEYS = frozenset({"access_key", "secret_key", "session_token", "aws_access_key_id",
                          "aws_secret_access_key", "aws_session_token", "password", "secret"})


@dataclass(frozen=True)
class S3Options:
    """The ``[s3]`` section: how to reach the S3 service (no credentials).

    Attributes:
        endpoint_override: ``host[:port]`` of an S3-compatible service (MinIO, Ceph), or ``None``
            for AWS.
        scheme: ``"https"`` (default) or ``"http"``.
        region: the bucket's region, or ``None`` for the AWS SDK's default.
    """

    endpoint_override: str | None = None
    scheme: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class EventStore:
    """Where the event store lives (a picklable value: no file system object, no credentials).

    Attributes:
        root: an absolute local folder (``<data>/events`` by default) or ``s3://bucket/prefix``
            (no trailing slash).
        s3: the ``[s3]`` options (unused for a local store).
    """

    root: str
    s3: S3Options = field(default_factory=S3Options)

    @classmethod
    def local(cls, data_dir: str | os.PathLike) -> "EventStore":
        """The default store: the folder ``<data_dir>/events``."""
        return cls(str(Path(data_dir) / "events"))

    @property
    def is_local(self) -> bool:
        """Whether the store is a local (POSIX) folder, read and written with the file API."""
        return not self.root.startswith("s3://")

    def path(self, *parts: str) -> str:
        """The location of ``parts`` (path components) under the root: a local path or an
        ``s3://`` URI."""
        if self.is_local:
            return str(Path(self.root, *parts))
        return "/".join((self.root, *parts))

    def filesystem(self):
        """The :class:`pyarrow.fs.FileSystem` of the store (:class:`~pyarrow.fs.LocalFileSystem`
        or an :class:`~pyarrow.fs.S3FileSystem` built from :attr:`s3` and the environment's
        credentials; cached per process and credentials).

        Raises:
            ConfigError: an S3 store without credentials in the environment.
        """
        import pyarrow.fs as pafs

        if self.is_local:
            return pafs.LocalFileSystem()
        # Keyed by the process id too: a forked worker (herald.parallel) builds its own.
        return _s3_filesystem(self.s3, *_credentials(), os.getpid())

    def fs_path(self, location: str) -> str:
        """``location`` (a path or URI of this store) as a path of :meth:`filesystem`
        (``s3://bucket/key`` -> ``bucket/key``)."""
        return str(location).removeprefix("s3://")

    def exists(self, location: str) -> bool:
        """Whether the file ``location`` exists."""
        if self.is_local:
            return Path(location).exists()
        import pyarrow.fs as pafs

        info = self.filesystem().get_file_info(self.fs_path(location))
        return info.type != pafs.FileType.NotFound

    def read_bytes(self, location: str) -> bytes:
        """The bytes of the file ``location``.

        Raises:
            FileNotFoundError / OSError: as the file system raises them.
        """
        if self.is_local:
            return Path(location).read_bytes()
        with self.filesystem().open_input_stream(self.fs_path(location)) as f:
            return f.read()

    def write_bytes(self, location: str, data: bytes) -> None:
        """Replace the file ``location`` with ``data`` atomically (local: a temporary file and a
        rename, :func:`herald.fsutil.atomic_write`; S3: one object PUT, visible only once
        complete)."""
        if self.is_local:
            from herald.fsutil import atomic_write

            atomic_write(Path(location), data)
            return
        with self.filesystem().open_output_stream(self.fs_path(location)) as f:
            f.write(data)

    def delete_file(self, location: str) -> None:
        """Delete the file ``location``; a missing file is no error."""
        if self.is_local:
            Path(location).unlink(missing_ok=True)
            return
        try:
            self.filesystem().delete_file(self.fs_path(location))
        except FileNotFoundError:
            pass

    def list_dir(self, location: str) -> list[tuple[str, bool]]:
        """The entries directly under the folder ``location`` as ``(name, is a folder)``, sorted
        by name; ``[]`` when it does not exist."""
        import pyarrow.fs as pafs

        if self.is_local:
            p = Path(location)
            return sorted((c.name, c.is_dir()) for c in p.iterdir()) if p.is_dir() else []
        sel = pafs.FileSelector(self.fs_path(location), allow_not_found=True)
        return sorted((i.base_name, i.type == pafs.FileType.Directory)
                      for i in self.filesystem().get_file_info(sel))

    def delete_dir(self, location: str) -> None:
        """Delete the folder ``location`` and everything under it (S3: every key under the
        prefix); a missing folder is no error."""
        if self.is_local:
            import shutil

            shutil.rmtree(location, ignore_errors=True)
            return
        try:
            self.filesystem().delete_dir(self.fs_path(location))
        except FileNotFoundError:
            pass

    def size(self, location: str) -> int:
        """The size of the file ``location`` in bytes."""
        if self.is_local:
            return os.path.getsize(location)
        return self.filesystem().get_file_info(self.fs_path(location)).size

    def parquet_file(self, location: str):
        """A :class:`pyarrow.parquet.ParquetFile` of the stored file ``location`` (read through
        :meth:`filesystem` for an S3 store)."""
        import pyarrow.parquet as pq

        if self.is_local:
            return pq.ParquetFile(location)
        return pq.ParquetFile(self.filesystem().open_input_file(self.fs_path(location)))

    def check(self, setting: str = "paths.events") -> None:
        """Check that the store can be used: for S3, that credentials are set and the bucket
        exists and can be listed (one request).  A local store is always fine (its folders are
        created when written).

        Raises:
            ConfigError: naming ``setting`` and the bucket; the message never holds a credential.
        """
        if self.is_local:
            return
        import pyarrow.fs as pafs

        bucket = self.fs_path(self.root).split("/", 1)[0]
        try:
            fs = self.filesystem()
            info = fs.get_file_info(bucket)
            if info.type == pafs.FileType.NotFound:
                raise ConfigError(f"{setting} = {self.root!r}: bucket {bucket!r} does not exist "
                                  f"(or these credentials cannot see it)")
            fs.get_file_info(pafs.FileSelector(self.fs_path(self.root), allow_not_found=True))
        except ConfigError as exc:
            raise ConfigError(_scrub(str(exc))) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{setting} = {self.root!r}: cannot reach the event store: "
                              f"{_scrub(str(exc))}") from None


def _credentials() -> tuple[str, str, str | None]:
    """``(access key id, secret key, session token or None)`` from the environment.

    Raises:
        ConfigError: ``AWS_ACCESS_KEY_ID`` or ``AWS_SECRET_ACCESS_KEY`` is unset or empty.
    """
    key, secret, token = (os.environ.get(v) or None for v in CREDENTIAL_ENV)
    if not key or not secret:
        raise ConfigError("paths.events is an s3:// URI but no S3 credentials are set: export "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (credentials are never "
                          "read from the configuration file)")
    return key, secret, token


@functools.lru_cache(maxsize=8)
def _s3_filesystem(options: S3Options, key: str, secret: str, token: str | None, pid: int):
    """One :class:`pyarrow.fs.S3FileSystem` per options, credentials and process ``pid``."""
    import pyarrow.fs as pafs

    kwargs: dict[str, Any] = {"access_key": key, "secret_key": secret, "session_token": token}
    for name in ("endpoint_override", "scheme", "region"):
        value = getattr(options, name)
        if value is not None:
            kwargs[name] = value
    return pafs.S3FileSystem(**kwargs)


def _scrub(text: str) -> str:
    """``text`` with any credential value of the environment replaced by ``***``."""
    for var in CREDENTIAL_ENV:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def parse_s3_options(table: Any, where: str) -> S3Options:
    """Parse the ``[s3]`` table of a configuration document.

    Raises:
        ConfigError: not a table, an unknown key, a credential in the file (pointing to the
            environment variables instead; the value is not repeated), a value that is not a
            string, or ``scheme`` other than ``http``/``https``.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [s3] must be a table")
    secrets = sorted(k for k in table if k.lower() in _SECRET_KEYS)
    if secrets:
        raise ConfigError(f"{where}: [s3] {', '.join(secrets)}: credentials are not read from "
                          f"the configuration file; set AWS_ACCESS_KEY_ID and "
                          f"AWS_SECRET_ACCESS_KEY in the environment")
    unknown = sorted(set(table) - S3_KEYS)
    if unknown:
        raise ConfigError(f"{where}: [s3]: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(S3_KEYS))}")
    for k, v in table.items():
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{where}: s3.{k} must be a non-empty string")
    scheme = table.get("scheme")
    if scheme is not None and scheme not in ("http", "https"):
        raise ConfigError(f"{where}: s3.scheme must be 'http' or 'https', not {scheme!r}")
    return S3Options(endpoint_override=table.get("endpoint_override"), scheme=scheme,
                     region=table.get("region"))


def parse_event_store(value: Any, base: Path, s3: S3Options, where: str) -> EventStore:
    """The :class:`EventStore` of ``[paths] events``: a local folder (relative to ``base``, or
    ``file:///abs/path``) or ``s3://bucket[/prefix]`` (``s3a://``, the Hadoop S3A connector's
    scheme that Spark users write, names the same objects and is stored as ``s3://``).

    Raises:
        ConfigError: not a string, a URI scheme other than ``s3``, ``s3a`` and ``file``
            (``hdfs`` and others are not supported), or an S3 URI without a valid bucket name.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: paths.events must be a non-empty string")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", value)
    if m is None:
        return EventStore(str((base / value).resolve()), s3)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme == "file":
        if not rest.startswith("/"):
            raise ConfigError(f"{where}: paths.events {value!r}: a file:// URI needs an absolute "
                              f"path (file:///...)")
        return EventStore(str(Path(rest).resolve()), s3)
    if scheme not in ("s3", "s3a"):  # s3a: Hadoop's (and Spark's) name for the same store
        raise ConfigError(f"{where}: paths.events {value!r}: the scheme {scheme!r} is not "
                          f"supported; use a local path or s3://bucket/prefix")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(f"{where}: paths.events {value!r}: {bucket!r} is not a valid S3 bucket "
                          f"name (3-63 lower-case letters, digits, '.' and '-')")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigError(f"{where}: paths.events {value!r}: '.' and '..' are not allowed in "
                          f"the prefix")
    return EventStore("s3://" + "/".join([bucket, *parts]), s3)
