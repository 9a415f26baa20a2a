"""What the API's handlers work with: the daemon's parts, handed over by the daemon."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from ...runtime.host import RunHost
from ...runtime.scheduler import Scheduler
from ...store.base import Store
from ..catalog import DagCatalog

if TYPE_CHECKING:
    from .auth import Tokens
    from .feed import EventFeed


@dataclass
class ApiContext:
    store: Store
    host: RunHost
    catalog: DagCatalog
    scheduler: Scheduler  # starts the runs triggered through the API, under their overlap policy
    feed: EventFeed
    tokens: Tokens


CONTEXT: web.AppKey[ApiContext] = web.AppKey("api", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
