"""``herald run`` killed with SIGKILL must not leave its message worker processes behind
(issue 12, item 10): the workers ask the kernel for SIGKILL when their parent dies
(``herald/parentdeath.py``).  A real run in a subprocess, held in its workers, then killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_pipeline import DAY, example_settings

SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import herald.deliver.messages as msgs
    import herald.pipeline as pl
    from herald import faults
    from herald.config import load_settings

    msgs.PARALLEL_MESSAGES = 1                     # every type's messages go to the workers
    msgs.MessageWorkers.available = lambda self: True
    piddir = Path(sys.argv[2])

    def slow(name):                                 # the workers stop here until killed
        if name == sys.argv[4]:
            (piddir / str(os.getpid())).write_text("")
            time.sleep(120)

    faults.install(slow)
    pl.run_day(load_settings(sys.argv[1]), sys.argv[3])
""")


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl(PR_SET_PDEATHSIG)")
@pytest.mark.parametrize("point", ["compose", "stage"])  # message workers, stage pool (parallel.py)
def test_workers_die_with_a_killed_run(repo_root, tmp_path, point):
    import tomli_w

    _, raw = example_settings(repo_root, tmp_path)
    raw["run"] = {"workers": 2}
    cfg = tmp_path / "herald.toml"
    cfg.write_text(tomli_w.dumps(raw))
    piddir = tmp_path / "pids"
    piddir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(cfg), str(piddir), DAY, point],
                            env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not workers and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            workers = [int(p.name) for p in piddir.iterdir()]
        assert workers, f"no worker reached the slow point: {proc.poll()} {proc.stderr.read()!r}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(_gone(w) for w in workers):
            time.sleep(0.1)
        left = [w for w in workers if not _gone(w)]
        assert left == [], f"worker processes outlived the killed run: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:  # only the workers this test started
            if not _gone(w):
                try:
                    os.kill(w, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_a_child_whose_parent_is_already_gone_exits_at_once(repo_root):
    # the fallback: a recorded parent id that is not the process's parent (it died before prctl)
    code = "from herald.parentdeath import exit_with_parent\nexit_with_parent(1)\nprint('alive')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=repo_root)
    assert (r.returncode, r.stdout) == (1, "")
    code = "import os\nfrom herald.parentdeath import exit_with_parent\nexit_with_parent(os.getppid())\nprint('alive')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=repo_root)
    assert (r.returncode, r.stdout) == (0, "alive\n")
