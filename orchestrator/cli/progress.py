"""Live progress of a run on a terminal: one line per job (or counts for big DAGs)."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

import anyio

from ..engine.records import JobRun, Run
from ..logs import LossyStream
from ..model.states import JobState
from ..printable import printable

_MARK = {
    JobState.PENDING: "·",
    JobState.QUEUED: "…",
    JobState.SUBMITTING: "↑",
    JobState.RUNNING: "▶",
    JobState.RETRY_WAIT: "↻",
    JobState.SUCCEEDED: "✓",
    JobState.FAILED: "✗",
    JobState.UPSTREAM_FAILED: "⤓",
    JobState.SKIPPED: "↷",
    JobState.CANCELLED: "⊘",
    JobState.UNKNOWN: "?",
}
MAX_LINES = 25


class Progress:
    """Redraws the run's state on ``stream`` every ``interval`` seconds while it runs."""

    def __init__(self, run: Run, stream: TextIO | None = None, interval: float = 0.2) -> None:
        self.run = run
        # a terminal that went away (closed, hung up) stops the drawing, never the run
        self.stream = LossyStream(stream or sys.stderr, "the terminal")
        self.interval = interval
        self._drawn = 0
        self._dirty = True

    def observe(self, jr: JobRun, old: JobState) -> None:
        self._dirty = True

    async def show(self) -> None:
        """Draw until cancelled (the caller cancels it when the run ends), then draw once more."""
        try:
            while True:
                if self._dirty:
                    self.draw()
                await anyio.sleep(self.interval)
        finally:
            self.draw()

    def _lines(self) -> list[str]:
        run = self.run
        jobs = [run.jobs[j] for j in run.dag.topological()] if run.jobs else []
        head = f"{printable(run.dag.name)} run {run.id[:12]}: {run.state.value}"
        if len(jobs) <= MAX_LINES:
            ids = [printable(j.id) for j in jobs]
            width = max(map(len, ids), default=0)
            lines = [head]
            for jr, shown in zip(jobs, ids, strict=True):
                attempt = f" (attempt {jr.attempts})" if jr.attempts > 1 else ""
                error = (
                    f"  {printable(jr.error.splitlines()[0][:80])}"
                    if jr.error and jr.state.terminal
                    else ""
                )
                lines.append(
                    f"  {_MARK[jr.state]} {shown:<{width}}  {jr.state.value}{attempt}{error}"
                )
            return lines
        counts = Counter(jr.state for jr in jobs)
        summary = "  ".join(f"{_MARK[s]} {s.value} {n}" for s, n in counts.items())
        running = [printable(jr.id) for jr in jobs if jr.state is JobState.RUNNING][:8]
        lines = [head, f"  {summary}"]
        if running:
            lines.append(f"  running: {', '.join(running)}")
        return lines

    def draw(self) -> None:
        self._dirty = False
        lines = self._lines()
        out = self.stream
        if self._drawn:
            out.write(f"\x1b[{self._drawn}F")
        for line in lines:
            out.write(f"\x1b[2K{line}\n")
        self._drawn = len(lines)
        out.flush()
