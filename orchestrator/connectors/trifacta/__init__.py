"""The Trifacta / Alteryx Designer Cloud v4 job types (REMOTE_APIS.md §1, seed 002).

``trifacta.jobGroup``: ``POST /v4/jobGroups`` with ``wrangledDataset`` (required, ``{"id": N}``),
``overrides`` (every field of seed 002 passed through untouched: ``execution``, ``profiler``,
``writesettings``, ``publications``, ``webhooks``, ``runParameters``, …), ``runParameters`` and
``ranfrom``; 201 ``{id, jobs.data, jobGraph, …}``.

``trifacta.flow``: ``POST /v4/flows/{flowId}/run`` with optional ``overrides`` and
``runParameters``. Every ``data[i].id`` of the answer is a job group (Airflow reads
``data[0].id``; a flow with several outputs starts several). An answer that only carries
``data[i].flowRun.id`` (a shape seen in one third-party script) is followed through
``GET /v4/flowRuns/{id}/status`` instead, and cannot be cancelled.

``trifacta.deployment``: ``POST /v4/deployments/{deploymentId}/run`` with optional
``runParameters``; 201 ``{"data": [{"reason", "sessionId", "id"}]}``, every ``id`` a job group.

Handle: ``{"kind": "jobGroup"|"flow"|"deployment", "target": <dataset, flow or deployment id>,
"jobGroupIds": [int, …]}``, plus ``"flowRunIds": [int, …]`` when the answer named flow runs.

Polling: ``GET /v4/jobGroups/{id}`` of every job group (its ``status``; a bare JSON string is
accepted too, and ``GET /v4/jobGroups/{id}/status`` is asked when the object has no status).
``Created``, ``Pending``, ``InProgress`` poll again; ``Complete`` succeeds; ``Failed`` fails;
``Canceled`` and ``Cancelled`` are cancelled; any other word (``undefined`` included) fails with
"unknown remote status". Words are compared without case. With several job groups the job polls
until every group has ended, then fails if one failed (or ended in an unknown status), is
cancelled if one was cancelled, and succeeds only when all are ``Complete``. Once ended, the
child jobs come from ``GET /v4/jobGroups/{id}/jobs``: ``outputs["jobs"]`` lists their ``id``,
``jobType``, ``status`` and ``jobGroupId``; a failure's error names each failed child with its
``errorMessage``.

Errors: the ``{"exception": {"name", "message", "details"}}`` document becomes the message
(``POST /v4/jobGroups: HTTP 400: ApiValidationFailed: …``); 401/403 :class:`AuthError`, 404
:class:`NotFoundError`, other 4xx :class:`PermanentError`. Auth: ``Authorization: Bearer`` with
the connection credential ``token``.

Cancel: ``POST /v4/jobGroups/{id}/cancel`` for every group (the route is third-party evidence
only). A group that had already ended is reported as such; a ``RouteNotFoundException`` means the
instance has no cancel route (``CancelResult(supported=False)``).

Idempotency: the key is sent as an ``Idempotency-Key`` header on every submit. Whether the create
body accepts ``name`` or ``description`` is [UNCONFIRMED], so the key goes into the body only
when the connection option ``key_field`` is ``"description"`` or ``"name"``; :meth:`find` then
first searches ``GET /v4/jobGroups?filter=<key>&filterFields=<key_field>`` for a group whose
field equals the key. Otherwise it reads the job group list (``limit``, ``offset``; a page
shorter than ``limit`` is the last; at most 1000 groups) for the group of the submission's
``wrangledDataset`` created since the write-ahead time (less the option ``clock_skew``, default
5 s) that no other stored attempt holds: none is ``None``, several raise
:class:`LookupUndecided`. Flow and deployment runs' groups do not name their flow or deployment,
so their lookup is undecided (``onAmbiguousSubmit`` applies).

Push: when the engine gives a ``callback_url``, a ``trifacta.jobGroup`` submission appends to
``overrides.webhooks`` a webhook (``method: post``, ``triggerEvent: onJobDone``,
``sslVerification: true``) that calls it; the user's own webhooks are kept. The engine gives one
(the daemon's ``--public-url``) because the job type says ``callbacks``, and then polls only as
a fallback. Flow and deployment run bodies are not documented to take
webhooks, so those are polled only.
"""

from __future__ import annotations

import functools

from ..base import remote_job_type
from .connector import CALLBACK_NAME, SCHEDULE, TrifactaConnector
from .documents import Kind
from .fields import validate_deployment, validate_flow, validate_job_group

__all__ = [
    "CALLBACK_NAME",
    "JOB_TYPES",
    "Kind",
    "TrifactaConnector",
    "validate_deployment",
    "validate_flow",
    "validate_job_group",
]

JOB_TYPES = (
    remote_job_type(
        "trifacta.jobGroup",
        functools.partial(TrifactaConnector, kind="jobGroup"),
        connection_type="trifacta",
        required=("wrangledDataset",),
        optional=("overrides", "runParameters", "ranfrom"),
        validate=validate_job_group,
        poll=SCHEDULE,
        callbacks=True,
    ),
    remote_job_type(
        "trifacta.flow",
        functools.partial(TrifactaConnector, kind="flow"),
        connection_type="trifacta",
        required=("flowId",),
        optional=("overrides", "runParameters"),
        validate=validate_flow,
        poll=SCHEDULE,
    ),
    remote_job_type(
        "trifacta.deployment",
        functools.partial(TrifactaConnector, kind="deployment"),
        connection_type="trifacta",
        required=("deploymentId",),
        optional=("runParameters",),
        validate=validate_deployment,
        poll=SCHEDULE,
    ),
)
