"""Job types by name: the local ones and one module per remote API."""

from __future__ import annotations

import importlib
from functools import cache

from .base import JobType

_MODULES = (
    "orchestrator.connectors.alation",
    "orchestrator.connectors.celonis",
    "orchestrator.connectors.fake",
    "orchestrator.connectors.granta",
    "orchestrator.connectors.local",
    "orchestrator.connectors.ocapi",
    "orchestrator.connectors.rest",
    "orchestrator.connectors.trifacta",
)


@cache
def job_types() -> dict[str, JobType]:
    found: dict[str, JobType] = {}
    for name in _MODULES:
        module = importlib.import_module(name)
        for job_type in module.JOB_TYPES:
            found[job_type.name] = job_type
    return found


def get(name: str) -> JobType:
    return job_types()[name]
