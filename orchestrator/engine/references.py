"""What a job's references (``{{ wrangle.files[0] }}``, :mod:`..model.refs`) name in this run:
resolved when an attempt is submitted, from its upstreams' outputs, the run's parameters and
(in an instance of a mapped job) its item."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..model import refs

if TYPE_CHECKING:
    from ..model.dag import Job
    from .records import JobRun


def references(job: Job) -> dict[str, refs.Ref]:
    """The references of ``job``'s fields, parsed once for these fields (kept on the job)."""
    cached = job._refs
    if cached is None or cached[0] is not job.params:
        cached = job._refs = (job.params, refs.references(job.params))
    return cached[1]


def reference_tokens(
    job: Job, jobs: Mapping[str, JobRun], scope: Mapping[str, Any]
) -> dict[str, Any]:
    """The values of ``job``'s references, keyed as the substitution looks them up
    (:data:`refs.KEY` + their text); :class:`refs.RefError` naming the first that does not
    resolve. ``scope`` holds ``params`` and, in an instance, ``item``."""
    found = references(job)
    if not found:
        return {}

    def outputs(job_id: str) -> Mapping[str, Any] | None:
        jr = jobs.get(job_id)
        return jr.outputs if jr is not None and jr.outputs else None

    return {refs.KEY + text: refs.resolve(ref, outputs, scope) for text, ref in found.items()}


def upstream_outputs(job_id: str, jobs: Mapping[str, JobRun]) -> dict[str, dict[str, Any]]:
    """The outputs of a job's direct upstreams, by id (what a ``python`` job's context gets)."""
    jr = jobs[job_id]
    return {p: dict(jobs[p].outputs) for p in jr.job.dag.upstream(job_id)} if jr.job.dag else {}
