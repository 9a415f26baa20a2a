"""Job types by name: the local ones and one module per remote API.

Each job type's module is imported the first time that job type is looked up, not before: a
DAG of ``command`` jobs never imports aiohttp nor the remote APIs' connectors. The table below
names the module of every job type; a test checks it against the modules' ``JOB_TYPES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from functools import cache

from .base import JobType

_MODULES: dict[str, str] = {
    "alation.job": "orchestrator.connectors.alation",
    "celonis.dataJob": "orchestrator.connectors.celonis",
    "fake": "orchestrator.connectors.fake",
    "granta.job": "orchestrator.connectors.granta",
    "command": "orchestrator.connectors.local",
    "python": "orchestrator.connectors.local",
    "ocapi.job": "orchestrator.connectors.ocapi",
    "http": "orchestrator.connectors.rest",
    "trifacta.jobGroup": "orchestrator.connectors.trifacta",
    "trifacta.flow": "orchestrator.connectors.trifacta",
    "trifacta.deployment": "orchestrator.connectors.trifacta",
}
"""Every job type's name and the module whose ``JOB_TYPES`` defines it."""


class LazyJobTypes(Mapping[str, JobType]):
    """Every registered job type by name; a job type's module is imported on first lookup."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)
        self._loaded: dict[str, JobType] = {}

    def __getitem__(self, name: str) -> JobType:
        found = self._loaded.get(name)
        if found is None:
            module = importlib.import_module(self._modules[name])  # KeyError: not a job type
            for job_type in module.JOB_TYPES:
                self._loaded[job_type.name] = job_type
            found = self._loaded[name]
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __repr__(self) -> str:
        return f"LazyJobTypes({list(self._modules)})"


@cache
def job_types() -> LazyJobTypes:
    return LazyJobTypes(_MODULES)


def get(name: str) -> JobType:
    return job_types()[name]
