"""Message files: fsutil.write_parts (atomic write of a message's parts) and messages.read_report."""

from __future__ import annotations

import os

from herald.deliver.messages import read_report
from herald.fsutil import atomic_write, write_parts


def test_write_parts_writes_the_concatenation_and_creates_directories(tmp_path):
    path = tmp_path / "a" / "b" / "m.eml"
    write_parts(str(path), (b"From: x\r\n", bytearray(b"body\r\n")), durable=False)
    assert path.read_bytes() == b"From: x\r\nbody\r\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in path.parent.iterdir()] == ["m.eml"]  # no temporary file left


def test_write_parts_leaves_the_same_content_untouched_and_replaces_other_content(tmp_path):
    path = tmp_path / "m.eml"
    atomic_write(path, b"headerbody")
    ino = path.stat().st_ino
    write_parts(str(path), (b"header", b"body"))
    assert path.stat().st_ino == ino  # unchanged: not rewritten
    write_parts(str(path), (b"HEADER", b"body"))  # same size, other bytes
    assert path.read_bytes() == b"HEADERbody" and path.stat().st_ino != ino
    write_parts(str(path), (b"h", b""))  # other size
    assert path.read_bytes() == b"h"


def test_write_parts_replaces_a_leftover_temporary_file(tmp_path):
    import threading
    path = tmp_path / "m.eml"
    tmp = tmp_path / f".m.eml.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_bytes(b"crashed writer")
    write_parts(str(path), (b"new",))
    assert path.read_bytes() == b"new" and not tmp.exists()


def test_read_report_reads_the_whole_file_whatever_the_size_says(tmp_path):
    path = tmp_path / "r.csv"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    assert read_report(path, len(data)) == data
    assert read_report(path, 10) == data  # the file grew: read to its end
    assert read_report(path, len(data) + 5) == data
    path.write_bytes(b"")
    assert read_report(path, 0) == b""
