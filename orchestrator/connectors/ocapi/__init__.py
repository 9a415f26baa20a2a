"""The ``ocapi.job`` job type: Salesforce B2C Commerce OCAPI Data API jobs (REMOTE_APIS.md §2).

Fields: ``jobId`` (required); ``parameters``, a list of ``{name, value}`` strings (name 1 to 256
characters, value at most 1000); ``apiVersion`` (``v23_2`` style; default the connection option
``api_version``, else ``v23_2``); ``onJobAlreadyRunning``: ``fail`` (default) or ``wait``.

Connection: ``base_url`` is the instance origin (``https://<instance-host>``); requests go to
``<base_url>/s/-/dw/data/<version>/...``. Credentials ``client_id`` and ``client_secret`` get a
token by OAuth client credentials (form ``grant_type=client_credentials``, HTTP Basic) from the
option ``token_url`` (absolute, or a path joined to ``base_url``; default Account Manager). The
token is cached until shortly before its ``expires_in``; a fault ``InvalidAccessTokenException``
(401) renews it once and sends the request again.

Handle: ``{"id": <execution id>, "jobId", "apiVersion"}`` (plus ``startTime`` when known).

Status (``execution_status``; the free ``status`` string stands in when it is missing):
``pending, running, pausing, paused, resuming, resumed, restarting, restarted, retrying, retried,
aborting`` poll again; ``finished`` succeeds only with ``exit_status.code == "OK"`` or
``exit_status.status == "ok"`` and fails with ``ERROR``/``error`` (the error is the message of the
last step whose exit code is ``ERROR``, else ``exit_status.message``); ``aborted`` fails;
``unknown`` and any other value fail with "unknown remote status" (never success). Faults raise
with their ``type`` and ``message``: 401/403 :class:`AuthError`, 404 :class:`NotFoundError`,
other 4xx :class:`PermanentError`.

``onJobAlreadyRunning: wait``: on ``JobAlreadyRunningException`` the running execution is found
with ``job_execution_search`` (status one_of RUNNING/PENDING, oldest first, count 1), polled on
the job type's schedule until it ends, and the job is started once more; a second refusal fails.

Cancel: the Data API has no abort endpoint (DELETE only removes a finished execution's record),
so :meth:`OcapiConnector.cancel` says so and leaves the execution running.

Find: the body holds the job's own parameters, so the idempotency key travels only as an
``Idempotency-Key`` header, which the remote ignores; an execution cannot be looked up by key.
:meth:`OcapiConnector.find` reads the job's executions (``GET /jobs/{job_id}/executions``, seed
004; ``job_execution_search`` newest first where that route is gone) and takes the one that
started since the submission's write-ahead time (less the connection option ``clock_skew``,
default 5 s), with this connection's ``client_id`` and the same parameters where the document
carries them, that no other stored attempt holds. None: ``None``; more than one:
:class:`LookupUndecided` (the engine then applies ``onAmbiguousSubmit``).
"""

from __future__ import annotations

from ..base import remote_job_type
from .connector import NO_CANCEL, SCHEDULE, OcapiConnector
from .documents import poll_result
from .fields import validate

__all__ = ["JOB_TYPES", "NO_CANCEL", "OcapiConnector", "poll_result", "validate"]

JOB_TYPES = (
    remote_job_type(
        "ocapi.job",
        OcapiConnector,
        connection_type="ocapi",
        required=("jobId",),
        optional=("parameters", "apiVersion", "onJobAlreadyRunning"),
        validate=validate,
        can_cancel=False,
        poll=SCHEDULE,
    ),
)
