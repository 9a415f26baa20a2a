"""Hostile input at the command line: values stay data, bad settings get one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_the_quickstart_runs_no_command_from_a_param(tmp_path: Path) -> None:
    """The issue's reproduction: the value reaches the commands as it is, and runs nothing."""
    value = "$(touch PWNED)"
    proc = cli(
        "run",
        str(ROOT / "dags" / "quickstart.json"),
        "--db",
        "memory:",
        "--json",
        "--param",
        f"region={value}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    jobs = {j["id"]: j for j in json.loads(proc.stdout)["jobs"]["data"]}
    assert jobs["validate"]["logTail"] == f"region {value} looks fine\n"
    assert jobs["extract"]["logTail"].startswith(f"extracting region {value} for run ")
    assert not (tmp_path / "PWNED").exists()
