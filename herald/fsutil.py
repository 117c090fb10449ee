"""File-system mechanics shared by the stages: atomic writes, durability, exclusive file locks.

- :func:`atomic_write` writes bytes to a temporary name beside the target and renames it (a reader
  never sees half a file); unchanged content is left untouched.
- :func:`write_parts` is the same for bytes given in parts, without hashing them (messages).
- :func:`atomic_writer` is the same for a writer that streams into a file object, and
  :func:`atomic_path` for a writer that opens the file by name (``pyarrow.parquet``).
- :func:`fsync_path` makes a file, or the names in a directory, durable (``sync_dir`` of the
  writers).
- :func:`sync_paths` makes many ``durable=False`` writes durable with one flush.
- :class:`FileLock` is an exclusive, non-blocking ``flock`` that the kernel drops when the process
  dies (a lock file left behind by a crash is not held).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Sequence


def atomic_write(path: Path, data: bytes, *, durable: bool = True, sync_dir: bool = False) -> str:
    """Write ``data`` to ``path`` via a temporary file and rename; returns the hex SHA-256.

    A file whose content is already ``data`` is left untouched (keeps its mtime on re-runs).
    Missing parent directories are created.

    Args:
        path: the target file.
        data: its bytes.
        durable: ``fsync`` the file before the rename (default).  ``False`` leaves durability to
            the caller, which must call :func:`sync_paths` before it records the write as done
            (the daily run does this once for all its report files instead of once per file).
        sync_dir: also ``fsync`` the directory after the rename (see :func:`atomic_writer`).

    Raises:
        OSError: the directory cannot be created or written.
    """
    path = Path(path)
    digest = hashlib.sha256(data).hexdigest()
    if same_content(path, len(data), digest):
        return digest
    with atomic_writer(path, durable=durable, sync_dir=sync_dir) as fh:
        fh.write(data)
    return digest


@contextmanager
def atomic_writer(path: Path, *, durable: bool = True, sync_dir: bool = False) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces ``path`` when the ``with`` block ends without
    an error (temporary file beside ``path``, then ``os.replace``); on an error the temporary file
    is removed and ``path`` is unchanged.  Missing parent directories are created; the file is
    ``0644``.  ``durable`` as for :func:`atomic_write`; ``sync_dir`` also ``fsync``-s the
    directory after the rename, so that the new name survives a power loss (a writer that records
    nothing else, such as a sensor's batch).

    Raises:
        OSError: the directory cannot be created or written.
    """
    with _replacing(Path(path), durable, sync_dir) as (_tmp, fh):
        yield fh


@contextmanager
def atomic_path(path: Path, *, durable: bool = True, sync_dir: bool = False,
                mode: int = 0o644) -> Iterator[Path]:
    """:func:`atomic_writer` for a writer that opens its file by name (``pyarrow.parquet``): yields
    the temporary file's path, which the writer fills (and closes) inside the ``with`` block; the
    rest is as for :func:`atomic_writer`.  The temporary name starts with ``.`` and ends with
    ``.tmp``, so readers that skip hidden files never see it.  ``mode``: the file's permission
    bits (before the umask; the event store uses ``0o600``).

    Raises:
        OSError: the directory cannot be created or written.
    """
    with _replacing(Path(path), durable, sync_dir, mode) as (tmp, _fh):
        # ``fsync`` of the held descriptor flushes the file, whichever descriptor wrote it.
        yield tmp


@contextmanager
def _replacing(path: Path, durable: bool, sync_dir: bool,
               mode: int = 0o644) -> Iterator[tuple[Path, BinaryIO]]:
    """The temporary file beside ``path`` and its open file object; renamed over ``path`` at the
    end (after an ``fsync`` when ``durable``, and with :func:`fsync_path` when ``sync_dir``),
    removed on an error."""
    # The temporary name is unique per writer (process id and thread id); O_EXCL refuses a leftover
    # of a crashed writer that had the same ids, which is then replaced.  The directory is created
    # only when the first attempt finds it missing (tens of thousands of files per run).
    tmp = path.with_name(f".{path.name[:200]}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, mode)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, mode)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield tmp, fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_path(path.parent)


def write_parts(path: str, parts: Sequence[bytes], *, durable: bool = True) -> None:
    """:func:`atomic_write` of the concatenation of ``parts`` (a message's header block and
    entity), without joining them and without hashing them.

    The same semantics: a temporary file beside ``path`` (``0644``, unique per process and thread)
    renamed over it, its directory created when missing, ``fsync`` when ``durable``; a file that
    already holds these bytes is left untouched.  That check reads the existing file only when its
    size matches, and compares bytes instead of SHA-256 digests: a new file costs one ``stat``.
    Written with ``os`` calls on ``str`` paths, for speed: the 9,762 messages (323 MB) of the
    1M-event bench day cost 0.5-0.6 s CPU to write to tmpfs instead of 0.9-1.3 s with
    ``atomic_write(path, headers + entity)`` (a digest of every message, the joined copy, and
    ``pathlib`` and file-object overhead per file), and an unchanged re-run 0.3 s instead of 0.8 s.

    Args:
        path: the target file.
        parts: its bytes, in order (any bytes-like objects).
        durable: as for :func:`atomic_write`.

    Raises:
        OSError: the directory cannot be created or written.
    """
    size = sum(len(p) for p in parts)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and st.st_size == size and _holds(path, parts):
        return
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name[:200]}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:
        os.makedirs(head, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _holds(path: str, parts: Sequence[bytes]) -> bool:
    """The file at ``path`` holds the concatenation of ``parts``."""
    with open(path, "rb") as fh:
        for part in parts:
            if fh.read(len(part)) != part:
                return False
        return fh.read(1) == b""


def same_content(path: Path, size: int, digest: str) -> bool:
    """``path`` exists with ``size`` bytes whose SHA-256 is ``digest``."""
    try:
        if path.stat().st_size != size:
            return False
    except FileNotFoundError:
        return False
    return file_sha256(path) == digest


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks).

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_sha256(paths: list[Path], threads: int = 4) -> list[str]:
    """:func:`file_sha256` of each of ``paths``, in order, hashed on up to ``threads`` threads
    (``hashlib`` releases the GIL while it hashes a block: a day's inputs, 240 MB in five files
    on the 1M benchmark day, hash in about half the time on two cores).

    Raises:
        OSError: a file cannot be read.
    """
    if len(paths) <= 1:
        return [file_sha256(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(paths))) as ex:
        return list(ex.map(file_sha256, paths))


def sync_paths(dirs: Iterable[Path]) -> None:
    """Make every file written with ``durable=False`` under ``dirs`` durable, with their names.

    One ``sync()`` flushes all dirty file data and metadata of the machine (Linux waits for it to
    complete), then each directory is ``fsync``-ed (POSIX: makes the renames durable on file
    systems where ``sync`` alone would not).  Tens of thousands of report files cost one flush
    instead of one ``fsync`` each.
    """
    os.sync()
    for d in sorted(set(dirs)):
        try:
            fsync_path(d)
        except FileNotFoundError:
            continue


def fsync_path(path: Path) -> None:
    """``fsync`` a file or a directory by its name.  For a directory, the names created, renamed or
    removed in it become durable; for a file, what another writer wrote and closed without syncing.

    Raises:
        OSError: it cannot be opened (``FileNotFoundError`` when it is missing).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileLock:
    """An exclusive ``flock`` on a lock file, taken without waiting.

    The kernel drops the lock when the process dies, so a lock file left by a crashed process is
    not held.  Use :meth:`acquire` / :meth:`release` or ``with FileLock(path) as held:`` (``held``
    is ``False`` when another process has it).
    """

    def __init__(self, path: Path, mode: int = 0o644) -> None:
        self.path = Path(path)
        self.mode = mode
        self.fd: int | None = None

    def acquire(self, *, wait: bool = False) -> bool:
        """Take the lock: ``True`` when taken, ``False`` when another process holds it (with
        ``wait``, block until it is free instead).  Creates the file and its directory when
        missing.

        Raises:
            OSError: the lock file cannot be created.
        """
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), self.mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (no-op when not held)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def link_or_write(src: Path, dst: Path, data: bytes) -> str:
    """Make ``dst`` a hard link to ``src`` whose content is ``data`` (one file, two names); where
    a link is not possible (another file system) ``data`` is written with :func:`atomic_write`.
    Returns the hex SHA-256 of ``data``.

    Raises:
        OSError: neither a link nor a write is possible.
    """
    src, dst = Path(src), Path(dst)
    digest = hashlib.sha256(data).hexdigest()
    try:
        if dst.exists() and os.path.samefile(src, dst):
            return digest
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name[:200]}.{os.getpid()}.{threading.get_ident()}.lnk")
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dst)
        return digest
    except OSError:
        return atomic_write(dst, data)
