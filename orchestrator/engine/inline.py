"""Attempts of inline job types (``JobType.inline``, the ``python`` job): the worker that runs
the attempt calls the job itself and has its outcome when the call returns. No submit and no
poll, no task, event or wake-up per call: the call runs inside the job's timeout and the run's
cancel scope, and a cancel of the job alone (``RunExecutor.cancel_job``) cancels it through
the job's wake-up (:meth:`JobRun.wake`, see :class:`_Interrupt`).

The records are those of any attempt: ``submitting`` (durable before the call starts), then
``running`` with the call's key as its handle (``{"call": key}``), then its end. After a crash,
an attempt stored as ``submitting`` follows the job's ``onAmbiguousSubmit`` (nothing can be
looked up: ``resubmit``, the default, calls it again as the same attempt); one stored as
``running`` is followed as any other, and its connector answers that the call is gone.

:class:`Calls` is a part of :class:`~orchestrator.engine.executor.RunExecutor`, as
:class:`~orchestrator.engine.attempt.Attempts` is.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import anyio

from .. import crash
from ..connectors.base import InlineConnector, PollResult, RemoteStatus, Submission
from ..model.retry import Outcome
from ..model.states import Reconcile
from .attempt import _CANCELLED, _NO_SCOPE, _UNKNOWN, Attempts, _Attempt
from .records import JobRun
from .references import outputs_problem


class _Interrupt:
    """Stands for the job's wake-up event while its call runs: once the job is cancelled
    (``cancel_job`` sets ``cancel_reason``, then wakes it), it cancels the task that runs the
    call, as :func:`asyncio.timeout` does: a native cancel, counted by the task and taken back
    (``uncancel``) by the caller after the call. A wake-up alone (a pushed callback) changes
    nothing; so does a call that cancels its own job (it is cancelled when it returns)."""

    __slots__ = ("fired", "jr", "task")

    def __init__(self, jr: JobRun, task: asyncio.Task[Any]) -> None:
        self.jr, self.task, self.fired = jr, task, False

    def set(self) -> None:
        if self.jr.cancel_reason is None or self.fired or self.task is asyncio.current_task():
            return
        self.fired = True
        self.task.cancel()


class Calls(Attempts):
    """The attempts of inline job types (a part of the run executor)."""

    async def _call(self, jr: JobRun) -> _Attempt:
        """A new attempt, written ahead, then called."""
        connector = cast(InlineConnector, self._connectors.get(jr.job_type, jr.job.connection))
        submission = await self._written_ahead(jr)
        if isinstance(submission, _Attempt):
            return submission
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
        deadline = self._clock.deadline(jr.timeout) if jr.timeout is not None else None
        result: PollResult | None = None
        try:
            with deadline if deadline is not None else _NO_SCOPE:
                crash.reached("after_accept")
                await self._accepted(jr, {"call": submission.idempotency_key})
                if jr.cancel_reason is None:  # else cancelled before the call started
                    result = await self._interruptible(jr, connector, submission)
        except anyio.get_cancelled_exc_class():  # the run's cancel: the call has unwound
            await self._cancelled(jr, connector, None)
            raise
        if jr.cancel_reason is not None:  # before, during or as the call ended
            return _Attempt(_CANCELLED, jr.cancel_reason)
        if deadline is not None and deadline.cancel_called:  # a call may swallow it and return
            return _Attempt(Outcome.TIMEOUT, f"timed out after {jr.timeout:g}s")
        assert result is not None
        jr.remote_status = result.remote_status
        if result.status is RemoteStatus.CANCELLED:
            return _Attempt(Outcome.FAILED, result.error or "the call was cancelled", result)
        if (too_large := outputs_problem(result.outputs)) is not None:
            return _Attempt(Outcome.FAILED, too_large, result)
        jr.outputs = dict(result.outputs)
        jr.log_tail = result.log_tail
        if result.status is RemoteStatus.SUCCEEDED:
            return _Attempt(None, result=result)
        return _Attempt(Outcome.FAILED, result.error or "the call failed", result)

    async def _interruptible(
        self, jr: JobRun, connector: InlineConnector, submission: Submission
    ) -> PollResult | None:
        """The call's outcome; None if ``cancel_job`` interrupted it. No cancel scope per call
        (its cost was a third of a no-op job's): the job's cancel cancels this task natively,
        and only that cancel is taken back here; any other (the run's) goes on."""
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        interrupt = jr.wake_event = _Interrupt(jr, task)
        try:
            result = await connector.call(submission)
        except asyncio.CancelledError:
            if interrupt.fired and task.uncancel() <= cancelling:
                return None  # this job's cancel, and nothing else
            raise
        finally:
            jr.wake_event = None
        if interrupt.fired:  # the call swallowed its cancellation and returned
            task.uncancel()
            return None
        return result
