"""`--log-level`: what each level adds to the JSON log lines on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def log_lines(level: str, home: Path) -> list[dict[str, object]]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            "dags/quickstart.json",
            "--no-progress",
            "--log-level",
            level,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "ORCHESTRATOR_HOME": str(home)},
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stderr.splitlines()]


def test_debug_logs_every_state_change(tmp_path: Path) -> None:
    lines = log_lines("debug", tmp_path)
    changes = [line for line in lines if line["event"] == "job.state"]
    assert changes
    assert all(line["level"] == "debug" for line in changes)
    extract = [(line["old"], line["new"]) for line in changes if line["job"] == "extract"]
    assert extract == [
        ("pending", "queued"),
        ("queued", "submitting"),
        ("submitting", "running"),
        ("running", "succeeded"),
    ]


@pytest.mark.parametrize("level", ["info", "warning"])
def test_levels_above_debug_leave_state_changes_out(level: str, tmp_path: Path) -> None:
    lines = log_lines(level, tmp_path)
    assert not [line for line in lines if line["event"] == "job.state"]
    assert all(line["level"] != "debug" for line in lines)
