"""One attempt of a job, from submission to its end: submitted with a write-ahead record, its
handle stored before the first poll, reconciled after a crash or an ambiguous submission
(adopted, never submitted twice), followed by polling, cancelled on the remote when the run
stops, and bounded by the job's timeout.

:class:`Attempts` is a part of :class:`~orchestrator.engine.executor.RunExecutor` (its state is
the executor's, set up by its constructor): a worker runs a job through :meth:`_run_job`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .. import crash
from ..connectors.base import (
    Connector,
    LookupUndecided,
    PollResult,
    RemoteHandle,
    RemoteStatus,
    Submission,
)
from ..errors import ConnectorError, StoreError, TransientError
from ..model.dag import DAG
from ..model.refs import RefError
from ..model.retry import Outcome
from ..model.states import AttemptState, JobState, Reconcile, RunState
from .fanout import Expansions
from .ports import CallbackUrls, ConnectorProvider
from .records import JobRun
from .references import (
    UpstreamOutputs,
    outputs_of,
    outputs_problem,
    reference_tokens,
    scope,
)

MAX_POLL_ERRORS = 10  # consecutive transient poll failures before the attempt errors
# seconds between polls (jittered) of an attempt whose remote was asked to call back: its end
# is pushed, so polling is only the fallback (the job type's own delay when that is longer)
CALLBACK_FALLBACK = 30.0

_UNKNOWN: Any = object()  # outcome of a submission that policy forbids resubmitting
_CANCELLED: Any = object()  # outcome of an attempt whose job alone was cancelled
_UNRESOLVED: Any = object()  # outcome of an attempt whose fields' references do not resolve
_ENDED = {outcome: AttemptState(outcome.value) for outcome in Outcome}  # how an attempt ended

_ACTIVE = (RunState.QUEUED, RunState.RUNNING)
CLAIM_MARGIN = 60.0  # seconds before a write-ahead record whose accepted handles may claim


class _Claims:
    """``Submission.claimed`` of one reconciliation: the handles read once, when first asked."""

    __slots__ = ("_executor", "_handles", "_jr", "_not_before")

    def __init__(self, executor: Attempts, jr: JobRun, not_before: float | None) -> None:
        self._executor, self._jr, self._not_before = executor, jr, not_before
        self._handles: list[RemoteHandle] | None = None

    async def __call__(self) -> list[RemoteHandle]:
        if self._handles is None:
            self._handles = await self._executor._claimed(self._jr, self._not_before)
        return self._handles


_NO_SCOPE = contextlib.nullcontext(None)


class _Attempt:
    """What one attempt ended with."""

    __slots__ = ("error", "outcome", "result")

    def __init__(
        self, outcome: Outcome | None, error: str | None = None, result: PollResult | None = None
    ) -> None:
        self.outcome = outcome  # None: succeeded
        self.error = error
        self.result = result


def _after_store() -> None:
    crash.reached("after_store")


class Attempts(Expansions):
    """The attempt lifecycle (a part of the run executor)."""

    # the executor's state that attempts read and write (set in RunExecutor.__init__)
    dag: DAG
    _connectors: ConnectorProvider
    _callbacks: CallbackUrls | None
    _rng: random.Random
    _cancel_grace: float
    _halted: bool
    _stop_reason: str | None
    _remaining: int
    _tokens_base: dict[str, Any]

    if TYPE_CHECKING:

        def _stop(self, state: RunState, reason: str) -> None: ...

        def _job_done(self, jr: JobRun) -> None: ...

        def _release(self, jr: JobRun) -> None: ...

        def _wait_retry(self, jr: JobRun, delay: float) -> None: ...

        async def _call(self, jr: JobRun) -> _Attempt: ...  # inline job types (.inline)

        async def _adopt_call(self, jr: JobRun) -> _Attempt: ...

    # -- one job -------------------------------------------------------------------------
    async def _run_job(self, jr: JobRun) -> None:
        if jr.started_at is None:
            jr.started_at = self._clock.time()
        if jr.job.map is not None:  # not a job to submit: its instances are
            await self._expand(jr)
            return
        if jr.adopt:
            jr.adopt = False
            result = await self._adopt(jr)
        else:
            jr.attempts += 1
            self._set(jr, JobState.SUBMITTING)
            result = await (self._call(jr) if jr.job_type.inline else self._attempt(jr))
        if result.outcome is None:
            jr.error = None
            self._attempt_write(jr, AttemptState.SUCCEEDED)
            self._set(jr, JobState.SUCCEEDED)
            self._job_done(jr)
            return
        if result.outcome is _UNKNOWN:
            self._attempt_write(jr, AttemptState.UNKNOWN, error=result.error)
            self._set(jr, JobState.UNKNOWN, result.error)
            self._job_done(jr)
            return
        if result.outcome is _UNRESOLVED:  # retrying would not change the upstreams' outputs
            self._attempt_write(jr, AttemptState.FAILED, error=result.error)
            self._set(jr, JobState.FAILED, result.error)
            self._job_done(jr)
            return
        if result.outcome is _CANCELLED:  # this job alone: the run goes on
            self._attempt_write(jr, AttemptState.CANCELLED, error=result.error)
            self._set(jr, JobState.CANCELLED, result.error)
            self._job_done(jr)
            return
        self._attempt_write(jr, _ENDED[result.outcome], error=result.error)
        if jr.policy.should_retry(jr.attempts, result.outcome):
            delay = jr.policy.delay(jr.attempts, self._rng)
            jr.retry_at = self._clock.time() + delay  # stored: a resumed run waits what is left
            self._set(jr, JobState.RETRY_WAIT, result.error)
            self._log.info(
                "job.retrying",
                job=jr.id,
                attempt=jr.attempts,
                outcome=result.outcome.value,
                error=result.error,
                delay=round(delay, 3),
            )
            self._release(jr)
            self._wait_retry(jr, delay)
            self._commit_soon()  # durable without anyone waiting for it
            return
        self._set(jr, JobState.FAILED, result.error)
        self._job_done(jr)

    def _submission(self, jr: JobRun) -> Submission:
        job = jr.job
        params: Mapping[str, Any] = job.params
        if jr.has_tokens or job.call is not None:
            outputs = outputs_of(self.run.jobs, self._expansions)
        if jr.has_tokens:
            tokens = {**self._tokens_base, "jobId": jr.id, "attempt": jr.attempts}
            tokens.update(reference_tokens(job, outputs, scope(job, self.run.params)))
            params = jr.job_type.substitute(params, tokens)
        if job.call is not None:
            params = {
                **params,
                "call": job.call,
                "__run_params__": self.run.params,
                "__upstream__": UpstreamOutputs(job, outputs),
            }
        key = f"{self.run.id}/{jr.id}/{jr.attempts}"
        submission = Submission(
            self.dag.name, self.run.id, jr.id, jr.attempts, key, params, wake=jr.wake
        )
        if self._callbacks is not None and jr.job_type.callbacks:
            submission.callback_url = self._callbacks.url(self.run.id, jr.id, jr.attempts)
        return submission

    async def _written_ahead(self, jr: JobRun) -> Submission | _Attempt:
        """A new attempt's submission, stored as ``submitting`` and durable before it leaves
        (the write-ahead rule); the attempt's end if its references do not resolve."""
        try:
            submission = self._submission(jr)
        except RefError as exc:
            return _Attempt(_UNRESOLVED, str(exc))
        if self._store is not None:
            self._attempt_write(jr, AttemptState.SUBMITTING, key=submission.idempotency_key)
            await self._commit()
        crash.reached("before_submit")
        return submission

    async def _attempt(self, jr: JobRun) -> _Attempt:
        """Submit a new attempt (written ahead), then follow it to its end."""
        connector = self._connectors.get(jr.job_type, jr.job.connection)
        submission = await self._written_ahead(jr)
        if isinstance(submission, _Attempt):
            return submission
        handle: RemoteHandle | None = None
        try:
            with self._clock.deadline(jr.timeout) if jr.timeout is not None else _NO_SCOPE as scope:
                try:
                    handle = await connector.submit(submission)
                except TransientError as exc:
                    if not exc.ambiguous:
                        return _Attempt(Outcome.ERROR, f"submit failed: {exc}")
                    found = await self._settle(jr, connector, submission, str(exc))
                    if isinstance(found, _Attempt):
                        return found
                    handle = found
                except ConnectorError as exc:
                    return _Attempt(Outcome.ERROR, f"submit failed: {exc}")
                except Exception as exc:  # a connector bug: the request may have gone out
                    self._log.exception("job.connector_bug", job=jr.id, attempt=jr.attempts)
                    why = f"connector error {type(exc).__name__}: {exc}"
                    found = await self._settle(jr, connector, submission, why)
                    if isinstance(found, _Attempt):
                        return found
                    handle = found
                crash.reached("after_accept")
                await self._accepted(jr, handle)
                result = await self._follow(jr, connector, handle, submission)
            if scope is not None and scope.cancelled_caught:
                return await self._timed_out(jr, connector, handle)
            return result
        except anyio.get_cancelled_exc_class():
            await self._cancelled(jr, connector, handle)
            raise

    async def _accepted(self, jr: JobRun, handle: RemoteHandle) -> None:
        """Store the handle and count the attempt as running; returns once the handle is
        durable when polls go to a remote (job types with a connection), so that no poll
        leaves while the store still says ``submitting``; in-process job types poll in memory
        and only hand the handle to the next group commit."""
        jr.handle = handle
        if self._store is None:
            self._set(jr, JobState.RUNNING)
            return
        try:
            self._attempt_write(jr, AttemptState.RUNNING, handle=handle)
        except StoreError as exc:  # a handle the store cannot keep: the run stops
            self._stop(RunState.FAILED, str(exc))
            await anyio.lowlevel.checkpoint()  # cancelled: this job is cancelled too
            raise
        self._set(jr, JobState.RUNNING)
        if jr.job_type.needs_connection:
            await self._commit()  # in the group commit of this turn of the loop
            crash.reached("after_store")
        else:  # polled in this process, nothing is sent: no need to wait for the commit
            self._commit_soon(after=_after_store)

    async def _settle(
        self, jr: JobRun, connector: Connector, submission: Submission, why: str
    ) -> RemoteHandle | _Attempt:
        """An ambiguous submission: the remote job it started, else what the policy says (a
        resubmission of the same attempt included)."""
        decision, found, message = await self._reconcile(jr, connector, submission, why)
        if decision is Reconcile.ADOPT:
            assert found is not None
            return found
        if decision is Reconcile.UNKNOWN:
            return _Attempt(_UNKNOWN, f"{message}; not sent again (onAmbiguousSubmit: unknown)")
        if decision is Reconcile.FAIL:
            return _Attempt(Outcome.ERROR, f"{message}; not sent again (onAmbiguousSubmit: fail)")
        self._log.warning("job.resubmitting", job=jr.id, attempt=jr.attempts, reason=message)
        try:
            return await connector.submit(submission)
        except ConnectorError as exc:
            return _Attempt(Outcome.ERROR, f"submitted again (the first outcome unknown): {exc}")

    async def _reconcile(
        self, jr: JobRun, connector: Connector, submission: Submission, why: str
    ) -> tuple[Reconcile, RemoteHandle | None, str]:
        """The submission may or may not have reached the remote: look it up (a remote job
        started since the write-ahead record that no other attempt claims) and adopt it, else
        decide by the job's ``onAmbiguousSubmit`` policy. Returns the decision, the handle of
        the job to adopt, and what was found (for the job's error)."""
        row = jr.attempt_row
        submission.not_before = row.submitted_at if row is not None else None
        submission.claimed = _Claims(self, jr, submission.not_before)
        outcome = "not found on the remote"
        try:
            found = await connector.find(submission)
        except LookupUndecided as exc:
            self._log.warning("job.find_undecided", job=jr.id, attempt=jr.attempts, why=str(exc))
            found, outcome = None, f"the remote's lookup cannot decide: {exc}"
        except ConnectorError as exc:
            self._log.warning("job.find_failed", job=jr.id, attempt=jr.attempts, error=str(exc))
            found, outcome = None, f"the lookup failed: {exc}"
        if found is not None:
            self._log.info("job.reconciled", job=jr.id, attempt=jr.attempts, remote=found)
            return Reconcile.ADOPT, found, "found on the remote"
        policy = Reconcile(jr.job.on_ambiguous_submit or jr.job_type.ambiguous_default)
        return policy, None, f"submission outcome unknown ({why}); {outcome}"

    async def _claimed(self, jr: JobRun, not_before: float | None) -> list[RemoteHandle]:
        """The handles held by every attempt but ``jr``'s current one that may have been
        accepted since ``not_before``: this run's in memory, and every stored run's."""
        handles = [o.handle for o in self.run.jobs.values() if o is not jr and o.handle]
        if self._store is None:
            return handles
        since = (not_before or 0.0) - CLAIM_MARGIN
        runs = {r.id: r for r in await self._store.list_runs(states=_ACTIVE, limit=10_000)}
        for record in await self._store.list_runs(limit=200):
            if record.ended_at is None or record.ended_at >= since:
                runs.setdefault(record.id, record)
        for run_id in runs:
            for attempt in await self._store.get_attempts(run_id):
                if attempt.handle is None or (attempt.accepted_at or since) < since:
                    continue
                mine = run_id == self.run.id and attempt.job_id == jr.id
                if not (mine and attempt.attempt == jr.attempts):
                    handles.append(attempt.handle)
        return handles

    async def _adopt(self, jr: JobRun) -> _Attempt:
        """After a restart: follow the attempt that was in flight, never submit it again."""
        if jr.job_type.inline and jr.handle is None:
            return await self._adopt_call(jr)
        connector = self._connectors.get(jr.job_type, jr.job.connection)
        handle = jr.handle
        submission = self._submission(jr)
        self._log.info("job.adopted", job=jr.id, attempt=jr.attempts, remote=handle)
        try:
            with self._clock.deadline(jr.timeout) if jr.timeout is not None else _NO_SCOPE as scope:
                if handle is None:  # stored as submitting: did the request reach the remote?
                    found = await self._settle(jr, connector, submission, "the process stopped")
                    if isinstance(found, _Attempt):
                        return found
                    handle = found
                    await self._accepted(jr, handle)
                result = await self._follow(jr, connector, handle, submission)
            if scope is not None and scope.cancelled_caught:
                return await self._timed_out(jr, connector, handle)
            return result
        except anyio.get_cancelled_exc_class():
            await self._cancelled(jr, connector, handle)
            raise

    async def _timed_out(
        self, jr: JobRun, connector: Connector, handle: RemoteHandle | None
    ) -> _Attempt:
        if handle is not None:
            with anyio.move_on_after(self._cancel_grace):
                await self._cancel_remote(jr, connector, handle)
        return _Attempt(Outcome.TIMEOUT, f"timed out after {jr.timeout:g}s")

    async def _cancelled(
        self, jr: JobRun, connector: Connector, handle: RemoteHandle | None
    ) -> None:
        if self._halted:
            # The store failed: a cancel sent now could not be recorded, so the remote job is
            # left running as the store shows it, for `resume` to follow (as after a crash).
            return
        with anyio.CancelScope(shield=True):
            if handle is not None:
                with anyio.move_on_after(self._cancel_grace):
                    await self._cancel_remote(jr, connector, handle)
            if not jr.state.terminal:
                self._attempt_write(jr, AttemptState.CANCELLED, error=self._stop_reason)
                self._set(jr, JobState.CANCELLED, self._stop_reason or "run cancelled")
                self._remaining -= 1

    async def _cancel_remote(self, jr: JobRun, connector: Connector, handle: RemoteHandle) -> None:
        """Cancel on the remote, retried with backoff until it acknowledges; the caller bounds
        the time. A permanent refusal (the job is gone, say) ends the tries."""
        fields = {"job": jr.id, "attempt": jr.attempts}
        tries = 0
        while True:
            tries += 1
            try:
                outcome = await connector.cancel(handle)
                break
            except TransientError as exc:
                self._log.warning("job.cancel_retrying", error=str(exc), tries=tries, **fields)
                await self._clock.sleep(min(30.0, 0.5 * 2 ** min(tries - 1, 10)))
            except ConnectorError as exc:
                jr.notes.append(f"remote cancel failed: {exc}")
                self._log.warning("job.cancel_failed", error=str(exc), **fields)
                return
        if not outcome.supported:
            jr.notes.append(f"not cancelled on the remote: {outcome.message}")
            self._log.warning("job.cancel_unsupported", message=outcome.message, **fields)
        else:
            self._log.info("job.cancelled_remote", message=outcome.message, **fields)

    async def _follow(
        self, jr: JobRun, connector: Connector, handle: RemoteHandle, submission: Submission
    ) -> _Attempt:
        schedule = jr.job_type.poll
        pushed = submission.callback_url is not None  # its end is pushed: poll as a fallback
        polls = 0
        errors = 0
        while True:
            jr.woken = False
            if jr.cancel_reason is not None:  # this job was cancelled (see cancel_job)
                with anyio.move_on_after(self._cancel_grace):
                    await self._cancel_remote(jr, connector, handle)
                return _Attempt(_CANCELLED, jr.cancel_reason)
            try:
                result = await connector.poll(handle)
            except TransientError as exc:
                errors += 1
                if errors > MAX_POLL_ERRORS:
                    return _Attempt(Outcome.ERROR, f"polling failed {errors} times: {exc}")
                delay = exc.retry_after or schedule.delay(errors, self._rng.random())
                await self._clock.sleep(delay)
                continue
            except ConnectorError as exc:
                return _Attempt(Outcome.ERROR, f"polling failed: {exc}")
            except Exception as exc:  # a connector bug must not take the run down
                self._log.exception("job.connector_bug", job=jr.id, attempt=jr.attempts)
                return _Attempt(Outcome.ERROR, f"polling failed: {type(exc).__name__}: {exc}")
            errors = 0
            jr.remote_status = result.remote_status
            if result.status is RemoteStatus.SUCCEEDED:
                if (too_large := outputs_problem(result.outputs)) is not None:
                    return _Attempt(Outcome.FAILED, too_large, result)
                jr.outputs = dict(result.outputs)
                jr.log_tail = result.log_tail
                return _Attempt(None, result=result)
            if result.status is RemoteStatus.FAILED:
                jr.outputs = dict(result.outputs) if outputs_problem(result.outputs) is None else {}
                jr.log_tail = result.log_tail
                return _Attempt(Outcome.FAILED, result.error or "the remote job failed", result)
            if result.status is RemoteStatus.CANCELLED:
                return _Attempt(Outcome.FAILED, result.error or "cancelled on the remote", result)
            polls += 1
            crash.reached("mid_poll")
            if jr.woken:
                continue
            rnd = self._rng.random()
            delay = result.next_poll if result.next_poll is not None else schedule.delay(polls, rnd)
            if pushed:
                delay = max(delay, CALLBACK_FALLBACK * (0.8 + 0.4 * rnd))
            event = jr.wake_event = anyio.Event()
            await self._clock.wait(event, max(0.0, delay))
            jr.wake_event = None
