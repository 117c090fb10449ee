"""reports/write.remove_stale: stale reports and a crashed writer's temporary files go."""

from __future__ import annotations

from herald.reports.write import remove_stale


def test_remove_stale_keeps_this_runs_files_and_removes_leftovers(tmp_path):
    keep = tmp_path / "r" / "a.csv"
    stale = tmp_path / "r" / "b.csv.eml"
    tmp = tmp_path / "r" / ".a.csv.eml.123.456.tmp"
    part = tmp_path / "r" / ".c.csv.part"
    other = tmp_path / "r" / "notes.txt"
    for p in (keep, stale, tmp, part, other):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    remove_stale(tmp_path, {keep})
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["a.csv", "notes.txt"]
