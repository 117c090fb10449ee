"""The ``herald`` command line registers only the sub-command it runs (issue 14: start-up time)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from herald import cli


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_each_command_module_registers_the_command_of_its_name(name):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(f"herald.commands.{name}").register(sub)
    assert list(sub.choices) == [name]


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_a_named_command_registers_only_itself_and_parses_as_the_full_parser_does():
    argv = ["-v", "run", "--config", "x.toml", "--date", "2026-11-30", "--force"]
    assert _choices(cli.build_parser(argv)) == ["run"]
    full = cli.build_parser([])
    assert _choices(full) == cli.COMMANDS
    parsed = vars(cli.build_parser(argv).parse_args(argv))
    assert parsed == vars(full.parse_args(argv))
    assert parsed["config"] == "x.toml" and parsed["force"] is True


@pytest.mark.parametrize("argv", [[], ["--help"], ["-v"], ["nosuchcommand"], ["--version"]])
def test_without_a_known_command_every_command_is_registered(argv):
    assert _choices(cli.build_parser(argv)) == cli.COMMANDS


def test_an_unknown_command_lists_every_command_in_its_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["nosuchcommand"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuchcommand'" in err
    for name in cli.COMMANDS:
        assert name in err


def test_a_command_imports_only_its_own_module():
    code = ("import sys; from herald import cli; cli.build_parser(['parse', 'x.csv']); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('herald.commands.', "
            "'sqlalchemy', 'jinja2', 'herald.deliver', 'herald.store.db')))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["herald.commands.parse"]


def test_the_console_script_returns_mains_status_and_freezes_the_objects_left():
    code = ("import gc, sys\n"
            "from herald.cli import entry\n"
            "sys.argv = ['herald', 'parse', '/nonexistent/x.csv']\n"
            "rc = entry()\n"
            "print(rc, gc.get_freeze_count() > 1000)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["1", "True"], out.stderr  # parse: 1, a file failed
    assert "/nonexistent/x.csv" in out.stderr
