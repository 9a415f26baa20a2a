"""``POST /api/v1/callbacks/{token}``: a remote pushes the end of a job (pushed completion).

The token is the one the engine put into the attempt's callback URL (see
:mod:`orchestrator.runtime.callbacks`): when it is bound to an attempt that is still followed
by this daemon, the engine polls that attempt at once, and the poll confirms the state from the
remote; the callback's body is read (at most :data:`MAX_CALLBACK_BODY` bytes) and ignored. A
forged token, another attempt's, or one replayed after its attempt ended changes nothing and
answers 404, the same answer each time. No bearer token is asked (a remote calls it): the
route is one of :data:`~.auth.OPEN_PREFIXES`. The token is never logged.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from .context import context
from .document import PREFIX
from .errors import not_found

log = structlog.get_logger("orchestrator.api")

MAX_CALLBACK_BODY = 64 * 1024


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"{PREFIX}/callbacks/{{token}}", callback)


async def callback(request: web.Request) -> web.Response:
    api = context(request)
    await request.content.read(MAX_CALLBACK_BODY)  # what the remote says is not trusted
    found = api.host.callback(request.match_info["token"])
    if found is None:
        log.info("callback.refused", remote=request.remote)
        raise not_found("callback")
    run_id, job_id, attempt = found
    log.info("callback.accepted", run=run_id, job=job_id, attempt=attempt, remote=request.remote)
    return web.json_response({"status": "accepted"}, status=202)
