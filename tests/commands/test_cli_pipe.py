"""``herald parse FILE | head``: a reader that goes away early must not make Herald print an error
(issue 12, item 6).  A real pipe, closed by the reader after the first line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_parse_into_a_pipe_closed_early_exits_quietly(repo_root, tmp_path):
    src = repo_root / "tests" / "data" / "samples" / "shadowserver" / "blocklist.csv"
    header, *rows = src.read_text().splitlines()
    big = tmp_path / "2026-11-30-blocklist-x.csv"
    # ~3 MB of events: far more than a pipe's buffer, so the writer meets the closed pipe.
    big.write_text("\n".join([header] + rows * 4000) + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "herald.cli", "parse", str(big), "--type", "blocklist"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=repo_root)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    try:
        err = proc.stderr.read()
        status = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert first.startswith(b"{")
    assert err == b"", err.decode(errors="replace")
    assert status in (0, 141, -13), status  # 0, or killed by SIGPIPE like a shell tool
