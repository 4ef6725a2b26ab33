"""The console scripts parse and dispatch."""

from __future__ import annotations

import subprocess
import sys

from emotalk3d.cli import build_parser, main


def test_help_lists_the_data_command(capsys):
    parser = build_parser()
    help_text = parser.format_help()
    assert "data" in help_text


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: emotalk3d" in capsys.readouterr().out


def test_console_script_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, "-m", "emotalk3d.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("emotalk3d ")
