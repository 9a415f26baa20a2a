"""A job type catalog that counts its lookups, for tests of what a run's set-up looks up."""

from __future__ import annotations

from orchestrator.connectors.base import JobType


class CountingTypes(dict[str, JobType]):
    """The job types, counting the lookups."""

    lookups = 0

    def __getitem__(self, name: str) -> JobType:
        self.lookups += 1
        return super().__getitem__(name)
