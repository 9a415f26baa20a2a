"""Fan-out at run time (a part of the run executor): a job with ``map`` expands, once its
upstreams are done, into one instance per item of its list (``job[0]``, ``job[1]``, ...), each
a job in its own right (attempts, retries, timeouts, pools, concurrency, webhooks, cancel),
with its item as ``{{ item }}`` in its fields.

The mapped job's dependents wait for every instance, and their trigger rules count the
instances: they become the dependents' upstreams in the mapped job's place. The mapped job
itself shows the fan-out: ``running`` while its instances run, then ``failed`` if one of them
failed, ``cancelled`` if one was cancelled, else ``succeeded`` (also when the list is empty: no
instance). A reference to it reads ``{"instances": [...]}``, each instance's outputs in the
order of the items: what a join reads (``{{ job.instances }}``, or ``ctx.upstream``). A list
that cannot be had (a reference that does not resolve, not a list, more items than
``mapLimit``) fails the mapped job, naming why.

The expansion is durable before any instance is submitted: the instances' rows are inserted,
``queued``, in the batch that marks the mapped job ``running``, and the instances wait for that
batch's commit. A crash before it leaves the mapped job to expand again; after it, ``resume``
finds the instances (their items come from the same list: the upstreams' outputs and the run's
parameters are stored) and goes on with each as with any job.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .. import crash
from ..errors import StoreError
from ..model.outcome import FAILURES
from ..model.refs import RefError
from ..model.states import JobState
from ..store.base import JobRecord
from .journal import Journal
from .records import JobRun
from .references import map_items, outputs_of, references

if TYPE_CHECKING:
    from ..model.dag import Job


class Expansion:
    """A mapped job that expanded: its instances, and how many have not ended."""

    __slots__ = ("instances", "left", "parent")

    def __init__(self, parent: JobRun, instances: list[JobRun]) -> None:
        self.parent = parent
        self.instances = instances
        self.left = sum(1 for jr in instances if not jr.state.terminal)


def instance_id(job_id: str, index: int) -> str:
    return f"{job_id}[{index}]"


def instance_job(job: Job, index: int, item: Any) -> Job:
    """The job of one instance: the mapped job's fields, its own id and item."""
    instance = object.__new__(type(job))  # a copy (copy.copy costs 6 times as much)
    fields = instance.__dict__
    fields.update(job.__dict__)
    fields["id"] = instance_id(job.id, index)
    fields["map"] = None
    fields["instance_of"] = job.id
    fields["item"] = item
    return instance


class Expansions(Journal):
    """The fan-out of mapped jobs (its state is the executor's, set up by its constructor)."""

    _heap: list[tuple[int, int, JobRun]]
    _seq: Any
    _need: anyio.Event
    _remaining: int
    # the expansions of this run, by the mapped job's id, and each instance's, by its id
    _expansions: dict[str, Expansion]
    _instance_of: dict[str, Expansion]

    if TYPE_CHECKING:

        def _job_done(self, jr: JobRun) -> None: ...

        def cancel_job(self, job_id: str, reason: str = "cancelled") -> str | None: ...

    async def _expand(self, jr: JobRun) -> None:
        """``jr``'s map, popped by a worker: its instances, durable, then queued."""
        run = self.run
        try:
            items = map_items(jr.job, outputs_of(run.jobs, self._expansions), run.params)
            if len(items) > jr.job.map_limit:
                raise RefError(
                    f"field 'map': {len(items):,} items, more than the limit of "
                    f"{jr.job.map_limit:,} ('mapLimit')"
                )
        except RefError as exc:
            self._set(jr, JobState.SUBMITTING)
            self._set(jr, JobState.FAILED, str(exc))
            self._job_done(jr)
            return
        self._set(jr, JobState.SUBMITTING)
        self._set(jr, JobState.RUNNING)
        instances = self._instances(jr, items)
        if self._store is not None:
            self._new_jobs = [*self._new_jobs, *(i.id for i in instances)]
        for instance in instances:
            self._set(instance, JobState.QUEUED)
        if not instances:
            jr.notes.append("mapped over an empty list: no instance")
            self._set(jr, JobState.SUCCEEDED)
            self._job_done(jr)
            return
        self._remaining += len(instances)
        await self._commit()  # the expansion is durable before any instance is submitted
        crash.reached("after_expand")
        for instance in instances:
            heapq.heappush(self._heap, (-instance.priority, next(self._seq), instance))
        self._need.set()

    def _instances(self, jr: JobRun, items: list[Any]) -> list[JobRun]:
        """The instances of ``jr``, one per item, in its dependents' upstreams in its place."""
        run = self.run
        instances = []
        references(jr.job)  # parsed once, the instances' copies keep it
        jr.job.has_tokens  # noqa: B018 - the same
        for index, item in enumerate(items):
            instance = JobRun(instance_job(jr.job, index, item), jr.job_type, jr.pools)
            instance.children = jr.children
            run.jobs[instance.id] = instance
            instances.append(instance)
        if instances:
            for child in jr.children:
                child.counts.total += len(instances) - 1
            jr.children = []
            if jr.id in self._watched:  # its webhooks are its instances'
                self._watched = self._watched | {i.id for i in instances}
        expansion = self._expansions[jr.id] = Expansion(jr, instances)
        for instance in instances:
            self._instance_of[instance.id] = expansion
        return instances

    def _instance_done(self, jr: JobRun) -> None:
        """An instance ended: once all have, so does its mapped job."""
        expansion = self._instance_of[jr.id]
        expansion.left -= 1
        if expansion.left == 0:
            self._end_expansion(expansion)

    def _end_expansion(self, expansion: Expansion) -> None:
        parent = expansion.parent
        states = [i.state for i in expansion.instances]
        failed = sum(1 for s in states if s in FAILURES)
        if failed:
            self._set(parent, JobState.FAILED, f"{failed} of {len(states)} instances failed")
        elif JobState.CANCELLED in states:
            self._set(parent, JobState.CANCELLED, "an instance was cancelled")
        else:
            self._set(parent, JobState.SUCCEEDED)
        self._job_done(parent)

    def _cancel_instances(self, job_id: str, reason: str) -> bool:
        """Cancel every instance of a mapped job that expanded (False: it did not)."""
        expansion = self._expansions.get(job_id)
        if expansion is None:
            return False
        for instance in expansion.instances:
            self.cancel_job(instance.id, reason)
        return True

    def _re_expand(self, jobs: Mapping[str, JobRecord]) -> list[str]:
        """After a restart: the instances the store holds, made again from the same list, for
        ``restore`` to put their states back. Returns their ids."""
        run = self.run
        found: dict[str, int] = {}
        for job_id in jobs:
            if job_id not in run.jobs and job_id.endswith("]"):
                mapped, _, index = job_id[:-1].rpartition("[")
                found[mapped] = max(found.get(mapped, 0), int(index) + 1)
        ids: list[str] = []
        for parent_id, n in found.items():
            parent = run.jobs[parent_id]
            try:
                items = map_items(parent.job, outputs_of(run.jobs, self._expansions), run.params)
            except RefError as exc:
                raise StoreError(f"run {run.id}: job {parent_id!r}: {exc}") from None
            if len(items) != n:  # the stored outputs gave another list: do not guess
                raise StoreError(
                    f"run {run.id}: job {parent_id!r}: its map gives {len(items)} items now, "
                    f"the store holds {n} instances"
                )
            ids.extend(i.id for i in self._instances(parent, items))
        return ids

    def _ended_expansions(self) -> None:
        """After a restart: the mapped jobs whose instances had all ended end now."""
        for expansion in self._expansions.values():
            expansion.left = sum(1 for i in expansion.instances if not i.state.terminal)
            if expansion.left == 0 and not expansion.parent.state.terminal:
                self._end_expansion(expansion)
