"""What a job's references (``{{ wrangle.files[0] }}``, :mod:`..model.refs`) name in this run:
resolved when an attempt is submitted, from its upstreams' outputs, the run's parameters and
(in an instance of a mapped job) its item."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
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


_NONE: Mapping[str, Any] = MappingProxyType({})
Outputs = Callable[[str], Mapping[str, Any] | None]
"""A job's outputs by its id (None: it has none)."""


def outputs_of(jobs: Mapping[str, JobRun], expansions: Mapping[str, Any]) -> Outputs:
    """What a reference to a job reads: its outputs; a mapped job's are its instances',
    ``{"instances": [...]}`` in the order of their items (made when read, never stored)."""

    def outputs(job_id: str) -> Mapping[str, Any] | None:
        expansion = expansions.get(job_id)
        if expansion is not None:
            return {"instances": [dict(i.outputs) for i in expansion.instances]}
        jr = jobs.get(job_id)
        return jr.outputs if jr is not None and jr.outputs else None

    return outputs


def reference_tokens(job: Job, outputs: Outputs, scope: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``job``'s references, keyed as the substitution looks them up
    (:data:`refs.KEY` + their text); :class:`refs.RefError` naming the first that does not
    resolve. ``scope`` holds ``params`` and, in an instance, ``item``."""
    found = references(job)
    if not found:
        return {}
    return {refs.KEY + text: refs.resolve(ref, outputs, scope) for text, ref in found.items()}


def upstream_outputs(job: Job, outputs: Outputs) -> dict[str, Mapping[str, Any]]:
    """The outputs of a job's direct upstreams, by id (what a ``python`` job's context gets);
    an instance's are its mapped job's."""
    if job.dag is None:
        return {}
    return {
        p: MappingProxyType(outputs(p) or _NONE)  # read only: they are the run's records
        for p in job.dag.upstream(job.instance_of or job.id)
    }


class UpstreamOutputs(Mapping[str, Mapping[str, Any]]):
    """:func:`upstream_outputs`, made at the first read: most calls never read them, and a
    mapping per upstream was made for each call. The upstreams have ended before the job
    starts, so what it reads later is what it would have read then."""

    __slots__ = ("_job", "_outputs", "_read")

    def __init__(self, job: Job, outputs: Outputs) -> None:
        self._job, self._outputs = job, outputs
        self._read: dict[str, Mapping[str, Any]] | None = None

    def _all(self) -> dict[str, Mapping[str, Any]]:
        if self._read is None:
            self._read = upstream_outputs(self._job, self._outputs)
        return self._read

    def __getitem__(self, job_id: str) -> Mapping[str, Any]:
        return self._all()[job_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


def scope(job: Job, params: Mapping[str, Any]) -> dict[str, Any]:
    """What ``params`` and ``item`` name for ``job``."""
    if job.instance_of is None:
        return {"params": params}
    return {"params": params, "item": job.item}


def map_items(job: Job, outputs: Outputs, params: Mapping[str, Any]) -> list[Any]:
    """The list a mapped job maps over; :class:`refs.RefError` saying why there is none."""
    value = job.map
    if isinstance(value, list):
        return value
    whole = refs.PATTERN.fullmatch(value) if isinstance(value, str) else None
    ref = refs.parse(whole.group(1)) if whole is not None else None
    if not isinstance(ref, refs.Ref):  # validation refuses it: a DAG changed under a run
        raise refs.RefError(f"field 'map': expected a list or a reference to one, got {value!r}")
    items = refs.resolve(ref, outputs, {"params": params})
    if not isinstance(items, list):
        raise refs.RefError(
            f"field 'map': {str(ref)!r} is not a list (it is {type(items).__name__} "
            f"{_short(items)})"
        )
    return items


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_OUTPUT_BYTES = 1024 * 1024
"""A job's outputs, as JSON, at most: a job that returns more fails, naming its size."""


# outputs this small cannot reach the limit, whatever their JSON escapes (6 bytes a character
# at most): 64 keys and strings of 1 KiB, numbers of 19 digits
_FEW, _SHORT, _BIG = 64, 1024, 10**18


def _surely_small(outputs: Mapping[str, Any]) -> bool:
    if len(outputs) > _FEW:
        return False
    for key, value in outputs.items():
        if len(key) > _SHORT:
            return False
        kind = type(value)
        if kind is str:
            if len(value) > _SHORT:
                return False
        elif kind is int:
            if not -_BIG < value < _BIG:
                return False
        elif not (value is None or kind is bool or kind is float):
            return False
    return True


def outputs_problem(outputs: Mapping[str, Any]) -> str | None:
    """Why a job's outputs cannot be kept (too large), or None."""
    if not outputs or _surely_small(outputs):  # not encoded just to be measured
        return None
    size = len(json.dumps(outputs, default=repr))
    if size <= MAX_OUTPUT_BYTES:
        return None
    return (
        f"outputs of {size:,} bytes, more than the limit of {MAX_OUTPUT_BYTES:,} "
        "(pass large results by reference: a path or a URL)"
    )
