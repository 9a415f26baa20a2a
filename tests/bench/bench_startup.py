"""Start-up: ``orchestrator run`` of a one-job local DAG, from start to exit, in a fresh process.

    python tests/bench/bench_startup.py [--rounds 10] [--against DIR]

Each round runs, one after the other in a new process each: ``python -c pass`` (the baseline:
the interpreter and its site packages), ``python -c "import orchestrator"``, and
``orchestrator run one.json`` of the DAG ``{"a": command ["true"]}`` with the default store
(embedded SQLite at ``$ORCHESTRATOR_HOME/orchestrator.db``, in a temporary home; one warm-up
run first creates it). Bytecode is cached (in a temporary ``PYTHONPYCACHEPREFIX``, even where
``PYTHONDONTWRITEBYTECODE`` is set), as it is in any installed package: otherwise every module
of a package installed in editable mode is compiled again at each start.

Reported: the median and the best of each over the rounds (wall time from the process's start
to its exit), and the run's median less the baseline's (what the orchestrator itself costs).
The bar (issue #18): the run's median under 0.5 s.

``--against DIR`` also runs the two orchestrator commands on the package in ``DIR`` (put first
on ``PYTHONPATH``), in the same rounds: ``git archive REV orchestrator | tar -x -C DIR`` gives
another version's code to compare with on this machine at this moment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_JOB = {
    "name": "one",
    "jobs": {"a": {"type": "command", "command": ["true"]}},
    "jobGraph": {"vertices": ["a"], "edges": []},
}
BAR = 0.5


def _orchestrator() -> list[str]:
    """The ``orchestrator`` command of this interpreter's environment (as the README runs it)."""
    script = Path(sys.executable).parent / "orchestrator"
    found = str(script) if script.exists() else shutil.which("orchestrator")
    return [found] if found else [sys.executable, "-m", "orchestrator"]


def _timed(argv: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{argv} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--against", metavar="DIR", help="a source tree to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "one.json").write_text(json.dumps(ONE_JOB))
        env = {**os.environ, "ORCHESTRATOR_HOME": str(Path(tmp) / "home")}
        env.pop("ORCHESTRATOR_CONNECTIONS", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        run = [*_orchestrator(), "run", "one.json", "--no-progress"]
        commands = {
            "python -c pass (baseline)": ([sys.executable, "-c", "pass"], env),
            'python -c "import orchestrator"': ([sys.executable, "-c", "import orchestrator"], env),
            "orchestrator run one.json": (run, env),
        }
        if args.against:
            against = {
                **env,
                "PYTHONPATH": str(Path(args.against).resolve()),
                "ORCHESTRATOR_HOME": str(Path(tmp) / "home-against"),
            }
            commands["import orchestrator, --against"] = (
                [sys.executable, "-c", "import orchestrator"],
                against,
            )
            commands["orchestrator run, --against"] = (run, against)
        for argv, where in commands.values():  # warm-up: bytecode caches, the store's file
            _timed(argv, where, tmp)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, (argv, where) in commands.items():
                times[name].append(_timed(argv, where, tmp))
    load = os.getloadavg()[0]
    print(f"start-up, {args.rounds} rounds alternating, load average {load:.2f}:")
    medians = {}
    for name, taken in times.items():
        medians[name] = statistics.median(taken)
        print(f"  {name:34} median {medians[name]:.3f} s, best {min(taken):.3f} s")
    ran, base = medians["orchestrator run one.json"], medians["python -c pass (baseline)"]
    verdict = "under" if ran < BAR else "NOT under"
    print(f"  the run, less the baseline: {ran - base:.3f} s; {verdict} the {BAR} s bar")


if __name__ == "__main__":
    main()
