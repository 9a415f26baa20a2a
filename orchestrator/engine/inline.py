"""Attempts of inline job types (``JobType.inline``, the ``python`` job): the worker that runs
the attempt calls the job itself and has its outcome when the call returns. No submit and no
poll, no task, event or wake-up per call: the call runs inside the job's timeout and the run's
cancel scope, and a cancel of the job alone (``RunExecutor.cancel_job``) cancels it through
the job's wake-up (:meth:`JobRun.wake`).

The records are those of any attempt: ``submitting`` (durable before the call starts), then
``running`` with the call's key as its handle (``{"call": key}``), then its end. After a crash,
an attempt stored as ``submitting`` follows the job's ``onAmbiguousSubmit`` (nothing can be
looked up: ``resubmit``, the default, calls it again as the same attempt); one stored as
``running`` is followed as any other, and its connector answers that the call is gone.

:class:`Calls` is a part of :class:`~orchestrator.engine.executor.RunExecutor`, as
:class:`~orchestrator.engine.attempt.Attempts` is.
"""

from __future__ import annotations

from typing import cast

import anyio

from .. import crash
from ..connectors.base import InlineConnector, RemoteStatus, Submission
from ..model.retry import Outcome
from ..model.states import AttemptState, Reconcile
from .attempt import _CANCELLED, _UNKNOWN, Attempts, _Attempt
from .records import JobRun


class _CancelOnWake:
    """Stands for the job's wake-up event while its call runs: once the job is cancelled
    (``cancel_reason`` set, then woken), the call's scope is cancelled. Other wake-ups (a pushed
    callback) find nothing to poll and change nothing."""

    __slots__ = ("_jr", "_scope")

    def __init__(self, jr: JobRun, scope: anyio.CancelScope) -> None:
        self._jr, self._scope = jr, scope

    def set(self) -> None:
        if self._jr.cancel_reason is not None:
            self._scope.cancel()


class Calls(Attempts):
    """The attempts of inline job types (a part of the run executor)."""

    async def _call(self, jr: JobRun) -> _Attempt:
        """A new attempt, written ahead, then called."""
        connector = cast(InlineConnector, self._connectors.get(jr.job_type, jr.job.connection))
        submission = self._submission(jr)
        if self._store is not None:
            self._attempt_write(jr, AttemptState.SUBMITTING, key=submission.idempotency_key)
            await self._commit()  # durable before the call starts
        crash.reached("before_submit")
        return await self._called(jr, connector, submission)

    async def _adopt_call(self, jr: JobRun) -> _Attempt:
        """After a restart, an attempt stored as ``submitting``: the call may have started, and
        nothing can say: the job's ``onAmbiguousSubmit`` decides."""
        connector = cast(InlineConnector, self._connectors.get(jr.job_type, jr.job.connection))
        submission = self._submission(jr)
        self._log.info("job.adopted", job=jr.id, attempt=jr.attempts, remote=None)
        decision, _, message = await self._reconcile(
            jr, connector, submission, "the process stopped"
        )
        if decision is Reconcile.UNKNOWN:
            return _Attempt(_UNKNOWN, f"{message}; not sent again (onAmbiguousSubmit: unknown)")
        if decision is Reconcile.FAIL:
            return _Attempt(Outcome.ERROR, f"{message}; not sent again (onAmbiguousSubmit: fail)")
        # resubmit (an in-process call is never found on a remote: there is nothing to adopt)
        self._log.warning("job.resubmitting", job=jr.id, attempt=jr.attempts, reason=message)
        return await self._called(jr, connector, submission)

    async def _called(
        self, jr: JobRun, connector: InlineConnector, submission: Submission
    ) -> _Attempt:
        """Record the attempt as running and call the job, within its timeout."""
        scope = self._clock.deadline(jr.timeout)  # a plain scope without one: for cancel_job
        try:
            with scope:
                crash.reached("after_accept")
                await self._accepted(jr, {"call": submission.idempotency_key})
                if jr.cancel_reason is not None:  # cancelled before the call started
                    return _Attempt(_CANCELLED, jr.cancel_reason)
                jr.wake_event = _CancelOnWake(jr, scope)
                try:
                    result = await connector.call(submission)
                finally:
                    jr.wake_event = None
        except anyio.get_cancelled_exc_class():  # the run's cancel: the call has unwound
            await self._cancelled(jr, connector, None)
            raise
        if scope.cancel_called:  # even if the call swallowed the cancellation and returned
            if jr.cancel_reason is not None:
                return _Attempt(_CANCELLED, jr.cancel_reason)
            return _Attempt(Outcome.TIMEOUT, f"timed out after {jr.timeout:g}s")
        jr.remote_status = result.remote_status
        if result.status is RemoteStatus.CANCELLED:
            return _Attempt(Outcome.FAILED, result.error or "the call was cancelled", result)
        jr.outputs = dict(result.outputs)
        jr.log_tail = result.log_tail
        if result.status is RemoteStatus.SUCCEEDED:
            return _Attempt(None, result=result)
        return _Attempt(Outcome.FAILED, result.error or "the call failed", result)
