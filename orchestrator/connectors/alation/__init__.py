"""The ``alation.job`` job type: Alation's asynchronous jobs (REMOTE_APIS.md §5, seed 003).

Fields, exactly one of:

* ``request``: ``{"method": "POST"|"PUT", "path": "/integration/v2/custom_field/", "body": …,
  "query"?: {…}}``, the call that starts the job, sent with the ``TOKEN`` header and the
  ``Idempotency-Key`` header (no Alation body has a field that could carry the key). Any start
  endpoint of §5.2 works; the multipart data dictionary upload does not (it is refused by
  validation). The path is relative to the connection's ``base_url``: absolute URLs are refused,
  so the token never leaves for another host.
* ``jobId``: follow a job that is already running (``GET /api/v1/bulk_metadata/job/?id=``).
* ``jobName``: follow a job by name (``?name=``, URL-encoded: names usually hold ``#``).

The start answer is recognised by its keys, as the SDK does: ``job_id`` (poll ``?id=``),
``job_name`` (poll ``?name=``), ``task`` (poll ``?id=task.id``; a data dictionary task, one whose
links point at ``/data_dictionary/tasks/`` or started under ``/data_dictionary/``, is polled at
``/integration/v1/data_dictionary/tasks/{id}``), ``job`` (``job.id``). Any other answer is an
error document and raises :class:`PermanentError` with its message.

Handle: ``{"jobId": N}`` or ``{"jobName": "…"}`` or ``{"taskId": N}``, with ``"startPath"``
when a request started it, and ``"phase"``: 1 while the first job runs. Two-job chains (the
asynchronous custom field value update, PUT ``/integration/v2/custom_field_value/async/``): when
a job ends ``successful`` and its ``result`` says "(can be tracked using jobs API): <id>", that
second job is followed; the handle is updated in place to ``"phase": 2, "nextJobId": <id>``. A
handle stored before that point still resumes correctly after a restart: the first job's result
leads to the second again. Only one hop is followed (the API documents two jobs).

Status (``status`` of the job API, compared without case): ``running`` polls again;
``successful`` succeeds; ``failed`` fails; ``partially_successful`` (an SDK model value that the
server may send) fails with an error that says the job was only partially successful, since part
of the work was not done; any other value fails with "unknown remote status". Data dictionary
tasks poll while ``state`` is not ``COMPLETED``, then ``status`` ``SUCCEEDED`` succeeds,
``FAILED`` fails and ``PARTIALLY_SUCCEEDED`` fails as partial, the errors taken from
``/tasks/{id}/errors/``.

Outputs: ``result``, parsed into JSON values whatever its shape (a JSON-encoded string, a list
of plain strings, a list of JSON strings, a dict): strings that hold a JSON object or array are
decoded, others kept; ``msg``; for chains ``jobIds`` (first and second job).

Errors: the dict shape ``{code, title, detail, errors}`` and the list shape
``[{"field": ["msg"]}]`` become readable messages (``400000 Invalid Payload: …; options: …``).

Cancel: Alation has no job cancel endpoint, so :meth:`AlationConnector.cancel` says so and the
job keeps running. Find: a ``jobId``/``jobName`` job starts nothing, so find returns its handle;
a started job cannot be looked up (the job API reads a job by the id or name of its start answer,
and there is no job list), so find raises :class:`LookupUndecided` and ``onAmbiguousSubmit``
applies, by default ``unknown`` for this job type (never sent twice).
"""

from __future__ import annotations

from ..base import remote_job_type
from .connector import NO_CANCEL, SCHEDULE, AlationConnector
from .documents import error_message, parse_result
from .fields import validate

__all__ = [
    "JOB_TYPES",
    "NO_CANCEL",
    "AlationConnector",
    "error_message",
    "parse_result",
    "validate",
]

JOB_TYPES = (
    remote_job_type(
        "alation.job",
        AlationConnector,
        connection_type="alation",
        optional=("request", "jobId", "jobName"),
        validate=validate,
        can_cancel=False,
        poll=SCHEDULE,
        ambiguous_default="unknown",  # nothing to look up: never send a job twice
    ),
)
