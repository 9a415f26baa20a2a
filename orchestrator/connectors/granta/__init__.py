"""The ``granta.job`` job type: Ansys Granta MI JobQueue (REMOTE_APIS.md §4).

Fields: ``jobType`` (required: ``ExcelImportJob``, ``ExcelExportJob`` or ``TextImportJob``),
``name`` (default ``<dag>.<job>``), ``description``, ``culture`` (e.g. ``en-GB``),
``scheduledExecutionDate`` (ISO 8601 with a time zone, sent in UTC), ``outputDir`` (a local
folder: after success every output file is downloaded into it). Import jobs take ``files``:
``[{"fileType": "Template"|"Data"|"Combined"|"Attachment", "path": "<local file>"}]``; an Excel
import needs ``Combined`` files or a ``Template`` and ``Data`` files (not both kinds), a text
import a ``Template`` and ``Data`` files; at most one template; paths and file names unique
(the server only sees names). Export jobs take ``databaseKey``, ``records``
(``[{"recordHistoryIdentity": int, "recordVersion"?: int|null}]``) and ``template`` (a local
path). Relative paths are relative to the current directory.

Connection: ``base_url`` is the service URL, ``<servicelayer>/proxy/v1.svc/mi``. Auth: Basic
with credentials ``username`` and ``password``, or ``Authorization: Bearer`` with ``token``.
Every request carries ``X-Granta-ApplicationName`` (option ``application_name``, default
``orchestrator``). Options ``max_upload_bytes`` and ``max_download_bytes`` (default 256 MiB)
cap the size of one input file and of one downloaded output file.

Submit: each input file is uploaded (``POST /v1alpha/job-queue/files``, multipart field
``file``; the answer is the file id as a JSON string, or as plain text), then ``POST
/v1alpha/job-queue/jobs`` with a ``GsaCreateJobRequest`` whose ``parameters`` is a JSON-encoded
string and whose file paths are the files' names. The idempotency key goes in the
``Idempotency-Key`` header (the server ignores it) and, as ``[orchestrator-key: <key>]``, on the
last line of the job's description, where :meth:`GrantaConnector.find` looks for it (``GET
/v1alpha/job-queue/jobs?descriptionFilter=<key>``, then an exact match on the marker: whether
the server's filter matches substrings is not documented). The name stays readable: it is what
the job queue shows and what output files are named after.

Handle: ``{"id": <job uuid>, "jobType", "name", "outputDir"?}`` (``outputDir`` absolute).

Status: ``Pending``/``Running`` poll again. ``Succeeded`` only means the job was attempted: an
import succeeds only when ``jobSpecificOutputs.summary`` says ``FinishedSuccessfully: true``
(no summary is a failure); an export succeeds unless its summary has ``NumberOfErrors > 0``.
``Failed`` fails with the summary's ``Errors``; ``Cancelled`` is cancelled; any other value (the
client-side ``Deleted`` included) fails as an unknown remote status, never success. Outputs:
``jobId``, ``outputFileNames``, ``outputInformation`` (``jobSpecificOutputs`` with each value
JSON-decoded) and, with ``outputDir``, ``outputFiles`` (the local paths). A download that cannot
be done fails the attempt with the job's outputs kept; a transient one is retried by polling
again.

Cancel: the API has no cancel. A ``Pending`` job is deleted from the queue (``DELETE
/v1alpha/job-queue/jobs/{id}``). A ``Running`` job cannot be stopped:
``CancelResult(supported=False)``. A later poll of a job that the queue no longer has, in any
process, reports it cancelled (remote status ``Deleted``, as the Python client marks a deleted
job) when its handle is one of submit or find (it names the job): the job was in the queue, so
it was deleted while pending (a cancel, or a user) or purged after it ended. Nothing of this is
kept in the connector's memory; a handle that does not name its job gets
:class:`NotFoundError`.
"""

from __future__ import annotations

from ..base import PollSchedule, remote_job_type
from .connector import GrantaConnector, auth_headers
from .documents import create_request, key_marker, output_information, poll_result
from .fields import validate

__all__ = [
    "JOB_TYPES",
    "GrantaConnector",
    "auth_headers",
    "create_request",
    "key_marker",
    "output_information",
    "poll_result",
    "validate",
]

# The Python client sleeps 1 s, then polls every second; jobs queue behind each other.
SCHEDULE = PollSchedule(initial=1.0, factor=1.5, cap=30.0)
FIELDS = (
    "name",
    "description",
    "culture",
    "scheduledExecutionDate",
    "files",
    "databaseKey",
    "records",
    "template",
    "outputDir",
)


JOB_TYPES = (
    remote_job_type(
        "granta.job",
        GrantaConnector,
        connection_type="granta",
        required=("jobType",),
        optional=FIELDS,
        validate=validate,
        can_cancel=True,  # pending jobs only: a running job cannot be stopped
        poll=SCHEDULE,
    ),
)
