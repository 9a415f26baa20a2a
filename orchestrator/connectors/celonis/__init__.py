"""The ``celonis.dataJob`` job type: Celonis EMS data jobs (REMOTE_APIS.md §3).

Fields: ``poolId`` and ``jobId`` (required); the ``JobExecutionConfiguration``: ``mode``
(``FULL`` or ``DELTA``, default ``DELTA``), ``transformations`` (task ids), ``extractions``
(``[{extractionId, tables?}]``), ``dataModels`` (``[{dataModelExecutionId, tables?}]``); each
``executeOnlySubsetOf...``/``loadOnlySubset...`` flag is sent true only when its list is given
(even empty), as PyCelonis does; ``waitIfRunning`` (default false).

Connection: ``base_url`` is the team URL (``https://<team>.<realm>.celonis.cloud``). Auth is
``Authorization: AppKey <app_key>`` with credential ``app_key``, else ``Bearer <token>`` with
credential ``token`` (or ``api_key``). Option ``appear_grace`` (seconds, default 60): how long
after the submission the job's status may still describe an older execution.

Submit: ``GET /integration/api/pools/{p}/logs/status``; if the job is ``RUNNING`` or ``QUEUED``
the submission fails ("an execution is already in progress") unless ``waitIfRunning``, which
polls on the job type's schedule until it is not. Then ``POST .../pools/{p}/jobs/{j}/execute``
with the configuration and the ``Idempotency-Key`` header (which the remote ignores).

Handle: ``{"poolId", "jobId", "submittedAt"}`` (wall-clock seconds) plus ``previousStart``, the
``lastExecutionStartDate`` the status showed before the submission (only when there was one),
and ``executionId`` when the execute answer carried one.

Status: ``logs/status`` is per job, not per execution. While it still shows ``previousStart``
with a terminal status, the new execution has not appeared yet: the poll says running, for
``appear_grace`` seconds after ``submittedAt``, then fails. A job missing from the status list
is running within that grace and :class:`NotFoundError` after it. ``QUEUED``/``RUNNING`` poll
again; ``SUCCESS`` succeeds; ``FAIL`` fails with the first log message of each failed task of
the latest execution (``logs/{j}/executions``, ``logs/executions?type=TASK``,
``logs/executions/detail``); ``CANCEL`` is cancelled; ``SKIPPED`` fails (it is not success);
any other value fails as an unknown remote status.

Cancel: ``POST .../pools/{p}/jobs/{j}/cancel``; it cancels the job's current execution.

Find: nothing on the remote carries the key. :meth:`CelonisConnector.find` takes the data job's
execution that started since the submission's write-ahead time (less the connection option
``clock_skew``, default 5 s) and that no other stored attempt holds, from the job's latest
executions (``logs/{j}/executions``) and its current execution (``currentExecutionId`` of ``GET
pools/{p}/jobs/{j}``, started at the status's ``lastExecutionStartDate``); the handle then has
its ``executionId``. None: ``None``. Several, or another attempt submitted the job since without
knowing its execution id: :class:`LookupUndecided`.
"""

from __future__ import annotations

from ..base import remote_job_type
from .connector import SCHEDULE, CelonisConnector, auth_headers
from .documents import configuration
from .fields import validate

__all__ = ["JOB_TYPES", "CelonisConnector", "auth_headers", "configuration", "validate"]

FIELDS = (
    "mode",
    "transformations",
    "extractions",
    "dataModels",
    "waitIfRunning",
)

JOB_TYPES = (
    remote_job_type(
        "celonis.dataJob",
        CelonisConnector,
        connection_type="celonis",
        required=("poolId", "jobId"),
        optional=FIELDS,
        validate=validate,
        poll=SCHEDULE,
    ),
)
