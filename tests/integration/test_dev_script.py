"""`./dev` as a newcomer meets it: help that lists the commands, one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dev(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(cwd / "dev"), *args],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_help_lists_every_command_and_the_run_options() -> None:
    result = _dev("help")

    assert result.returncode == 0
    for command in ("run", "test", "check", "openapi", "bench", "sam", "setup-browser", "help"):
        assert f"\n  {command}" in result.stdout, command
    for option in ("--port", "--aws-port", "--stripe-port", "--host", "PYTHON="):
        assert option in result.stdout, option
    assert "set -euo" not in result.stdout


def test_no_command_prints_the_help() -> None:
    result = _dev()

    assert result.returncode == 0
    assert result.stdout.startswith("Usage: ./dev COMMAND")


def test_an_unknown_command_is_named_and_the_help_follows() -> None:
    result = _dev("deploy")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == "dev: unknown command 'deploy'"
    assert "Usage: ./dev COMMAND" in result.stderr


def _copy_of_dev(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "dev", tmp_path / "dev")
    for name in ("pyproject.toml",):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "src").mkdir()
    shutil.copy(ROOT / "src" / "requirements.txt", tmp_path / "src" / "requirements.txt")
    return tmp_path


def test_a_python_that_is_not_3_13_is_one_line(tmp_path: Path) -> None:
    project = _copy_of_dev(tmp_path)

    result = _dev("check", cwd=project, env={"PYTHON": "/bin/false"})

    assert result.returncode == 1
    assert result.stderr == "dev: PYTHON=/bin/false is not a Python 3.13 interpreter\n"
    assert not (project / ".venv").exists()


def test_a_failed_install_is_one_line_and_is_tried_again_next_time(tmp_path: Path) -> None:
    project = _copy_of_dev(tmp_path)
    # A .venv whose interpreter passes the version check but whose pip fails, as pip does
    # when PyPI cannot be reached.
    bin_dir = project / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "python"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = -m ] && { echo "ERROR: No matching distribution found" >&2; exit 1; }\nexit 0\n'
    )
    fake.chmod(0o755)

    result = _dev("test", cwd=project)

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("dev: installing the dependencies into .venv failed")
    assert "check that PyPI is reachable" in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (project / ".venv" / ".installed").exists()
