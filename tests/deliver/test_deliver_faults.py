"""Exactly once under crashes: ``herald send`` (a real subprocess) is killed with SIGKILL at each
step of an SMTP transaction — before the greeting, after MAIL, after RCPT, after the data was
accepted but before the result was recorded, and after the data was refused but before that was
recorded — then restarted.  No report may be missing and none may arrive twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import tomli_w

from herald.cli import main
from herald.deliver.outbox import enqueue_reports, list_outbox
from herald.store.db import open_db
from tests.deliver_support import DAY, Handler, SmtpServer, make_report, make_settings

ROOT = Path(__file__).resolve().parents[2]


def _herald(cfg: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "herald.cli", *args, "--config", str(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _cli(capsys, cfg: Path, *args: str) -> tuple[int, str]:
    """``herald <args> --config cfg`` in this process (the restarted sender, the operator)."""
    capsys.readouterr()
    rc = main([*args, "--config", str(cfg)])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


class SilentServer:
    """Accepts TCP connections and never sends the SMTP greeting: a client is stuck before the
    SMTP session starts (``reached`` is set on the first connection)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.reached = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            while True:
                c, _ = self.sock.accept()
                self.conns.append(c)
                self.reached.set()
        except OSError:
            return

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


STEPS = {
    # step: (Handler.block_at, block_reply, state of the interrupted message after the restart)
    "before-greeting": (None, None, "sent"),
    "after-MAIL": ("MAIL", None, "sent"),
    "after-RCPT": ("RCPT", None, "sent"),
    "after-DATA-accepted": ("DATA", None, "held"),
    "after-DATA-refused": ("DATA", "451 4.3.0 try again later", "held"),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_sigkill_at_each_step_then_restart_delivers_each_report_exactly_once(step, tmp_path, capsys):
    _run_fault(step, f"sqlite:///{tmp_path / 'h.db'}", tmp_path, capsys)


@pytest.fixture
def pg_url(pg_database) -> str:
    """A fresh schema of the session's PostgreSQL database (as ``db_fixtures.db_url`` makes)."""
    import secrets
    from urllib.parse import quote

    import psycopg

    from tests.db_fixtures import pg_dsn

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_dsn(pg_database), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = pg_dsn(pg_database).replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}?options={quote(f'-csearch_path={schema}')}"


def test_sigkill_after_data_on_postgresql(pg_url, tmp_path, capsys):
    _run_fault("after-DATA-accepted", pg_url, tmp_path, capsys)


def _run_fault(step: str, db_url: str, tmp_path: Path, capsys) -> None:
    block_at, block_reply, interrupted_state = STEPS[step]
    handler = Handler(block_at=block_at, block_nth=2, block_reply=block_reply)
    silent = SilentServer() if step == "before-greeting" else None
    with SmtpServer(handler) as srv:
        settings, raw = make_settings(tmp_path, db_url, smtp={"port": srv.port})
        if silent:
            raw["smtp"]["port"] = silent.port
        cfg = tmp_path / "herald.toml"
        cfg.write_text(tomli_w.dumps(raw))
        db = open_db(db_url, upgrade=True)
        reps = [make_report(tmp_path, "Example Cable ISP", t) for t in ("scan_http", "scan_rdp", "scan_dns")]
        ids = enqueue_reports(db, settings, reps, DAY)
        mids = {e.id: e.message_id for e in list_outbox(db)}
        victim = ids[0] if silent else ids[1]  # the second message's transaction is interrupted

        proc = _herald(cfg, "send", "--once")
        reached = silent.reached if silent else handler.reached
        assert reached.wait(60), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        handler.proceed.set()  # the server finishes its step towards a dead client
        if silent:
            silent.close()
            raw["smtp"]["port"] = srv.port
            cfg.write_text(tomli_w.dumps(raw))
        before = {e.id: e.state for e in list_outbox(db)}
        assert before[victim] == "sending"  # the crash left it mid-transaction

        rc, out = _cli(capsys, cfg, "send", "--once")
        states = {e.id: e for e in list_outbox(db)}
        assert states[victim].state == interrupted_state, (states[victim], out)
        for oid in ids:
            if oid != victim:
                assert states[oid].state == "sent", (states[oid], out)
        counts = handler.counts()
        if interrupted_state == "held":
            assert states[victim].hold_reason == "outcome_unknown"
            assert "Check the relay's log" in states[victim].last_error
            rc, out = _cli(capsys, cfg, "outbox", "--state", "held")
            assert "outcome unknown" in out and str(victim) in out
            if step == "after-DATA-accepted":
                # it did arrive: the operator confirms from the relay's log
                assert counts[mids[victim]] == 1
                rc, out = _cli(capsys, cfg, "outbox", "--mark-sent", str(victim), "--reason", "in relay log")
            else:
                # the relay refused it: the operator sends it again
                assert counts[mids[victim]] == 0
                rc, out = _cli(capsys, cfg, "outbox", "--release", str(victim), "--reason", "451 in relay log")
                assert rc == 0, out
                rc, out = _cli(capsys, cfg, "send", "--once")
            assert rc == 0, out
        else:
            assert "requeued after a crash 1" in out
        # Every report arrived exactly once; another run of the sender changes nothing.
        rc, out = _cli(capsys, cfg, "send", "--once")
        assert handler.counts() == {mid: 1 for mid in mids.values()}, handler.counts()
        assert {e.state for e in list_outbox(db)} == {"sent"}
        db.dispose()
