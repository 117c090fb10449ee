"""ReportSpool: reports assembled from byte slices across batches, with a memory budget."""

from __future__ import annotations

import hashlib
import random

from herald.reports.render import ReportSpool


def _fill(tmp_path, budget: int, seed: int = 7):
    rnd = random.Random(seed)
    spool = ReportSpool(buffer_bytes=budget)
    expected: dict = {}
    paths = [tmp_path / f"r{i % 5}" / f"report-{i}.csv" for i in range(40)]
    for _batch in range(30):
        for p in rnd.sample(paths, 15):
            rows = rnd.randint(1, 20)
            data = b"".join(f"{rnd.random()},{p.name}\n".encode() for _ in range(rows))
            # a memoryview into a larger buffer, as the daily run passes them
            view = memoryview(b"xx" + data + b"yy")[2:2 + len(data)]
            spool.append(p, b"a,b\n", view, rows)
            e = expected.setdefault(p, [b"a,b\n", 0])
            e[0] += data
            e[1] += rows
    return spool, expected


def test_spool_writes_same_files_whatever_the_budget(tmp_path):
    results = {}
    for budget in (1 << 30, 4096, 1):
        root = tmp_path / str(budget)
        spool, expected = _fill(root, budget)
        if budget == 1:
            # the budget is exceeded at once: every report has been spilled to its .part file
            assert any(p.name.endswith(".part") for p in root.rglob("*"))
        out = spool.finish()
        assert set(out) == set(expected)
        for p, (data, rows) in expected.items():
            assert p.read_bytes() == data
            assert out[p] == (hashlib.sha256(data).hexdigest(), rows, len(data))
        assert not [p for p in root.rglob("*.part")]
        results[budget] = {p.relative_to(root): p.read_bytes() for p in expected}
    assert results[1 << 30] == results[4096] == results[1]


def test_spool_keeps_identical_file_untouched(tmp_path):
    spool, expected = _fill(tmp_path, 1 << 30)
    spool.finish()
    p = next(iter(expected))
    mtime = p.stat().st_mtime_ns
    spool2, _ = _fill(tmp_path, 64)  # same content, spilled on the way
    spool2.finish()
    assert p.stat().st_mtime_ns == mtime
    assert not list(tmp_path.rglob("*.part"))


def test_spool_buffer_stays_within_budget(tmp_path):
    spool = ReportSpool(buffer_bytes=10_000)
    for i in range(200):
        spool.append(tmp_path / f"{i % 7}.csv", b"h\n", b"x" * 900 + b"\n", 1)
        assert spool.buffered <= 10_000 + 903
    spool.finish()
    assert sum(p.stat().st_size for p in tmp_path.glob("*.csv")) == 7 * 2 + 200 * 901
