"""The DAG model: jobs on a directed graph, built from Python or from JSON, validated up front.

Python::

    with DAG("quickstart", params={"region": "02"}) as dag:
        extract = Job("extract", type="command", command=["echo", "hi"])
        load = Job("load", type="fake", duration="1s")
        extract >> load

JSON: ``{"name", "params", "jobs": {id: {...}}, "jobGraph": {"vertices", "edges"}}`` in the
shape of seed 002 (see DESIGN.md). Both load to the same :class:`DAG`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import DagError
from . import refs
from .durations import parse_duration
from .graph import topological
from .retry import RetryPolicy
from .tokens import has_tokens
from .trigger_rules import TriggerRule
from .validation import validate_dag

_NO_RETRY = RetryPolicy()
_current_dag: contextvars.ContextVar[DAG | None] = contextvars.ContextVar("dag", default=None)


class Job:
    """One vertex of a DAG: a job type, its connection and the connector's fields.

    Made inside ``with DAG(...)``, a job joins that DAG; ``a >> b`` makes ``b`` depend on ``a``.
    """

    # an instance of a mapped job (made by the engine when that job expands): the mapped
    # job's id and the instance's item (``{{ item }}`` in its fields)
    instance_of: str | None = None
    item: Any = None

    def __init__(
        self,
        id: str,
        type: str,
        *,
        connection: str | None = None,
        trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
        retries: RetryPolicy | int | Mapping[str, Any] | None = None,
        timeout: float | str | None = None,
        priority: int = 0,
        pool: str | Sequence[str] | None = None,
        on_ambiguous_submit: str | None = None,
        description: str | None = None,
        webhooks: list[dict[str, Any]] | None = None,
        call: Callable[..., Any] | None = None,
        vertex: str | int | None = None,
        map: Any = None,
        map_limit: int = refs.DEFAULT_MAP_LIMIT,
        **params: Any,
    ) -> None:
        self.id = id
        self.type = type
        self.connection = connection
        self.trigger_rule = trigger_rule
        self.retries = retries
        self.timeout = timeout
        self.priority = priority
        self.pool = pool
        self.on_ambiguous_submit = on_ambiguous_submit
        self.description = description
        self.webhooks = list(webhooks or [])
        self.call = call
        self.vertex = id if vertex is None else vertex
        # upstream outputs built in Python (``a.outputs.path``) are written as references, and
        # make this job depend on theirs
        try:
            params, sources = refs.outputs_in(params)
            self.map, map_sources = refs.outputs_in(map)
        except RecursionError:  # a value that contains itself, or nested beyond any need
            raise DagError(
                f"job {id!r}: a field contains itself, or is nested too deep to store"
            ) from None
        self.params = params
        self.map_limit = map_limit
        self._tokens: tuple[dict[str, Any], bool] | None = None  # params and has_tokens
        # params and their references (``{{ job.path }}``), parsed once: see engine.references
        self._refs: tuple[Mapping[str, Any], dict[str, Any]] | None = None
        self.dag: DAG | None = None
        dag = _current_dag.get()
        if dag is not None:
            dag.add(self)
        own = self.dag
        if own is not None:
            for source in (*sources, *map_sources):
                if source.dag is own and own.jobs.get(source.id) is source:
                    own.add_edge(source, self)

    @property
    def outputs(self) -> refs.Output:
        """This job's outputs, to put in another job's field: ``extract.outputs.files[0]``."""
        return refs.Output(self.id, (), self)

    # -- resolved views (valid after DAG.validate) ----------------------------------------
    @property
    def rule(self) -> TriggerRule:
        rule = self.trigger_rule
        return rule if isinstance(rule, TriggerRule) else TriggerRule(rule)

    @property
    def retry_policy(self) -> RetryPolicy:
        r = self.retries
        if r is None:
            return _NO_RETRY
        if isinstance(r, RetryPolicy):
            return r
        return RetryPolicy.from_json(r if not isinstance(r, Mapping) else dict(r))

    @property
    def timeout_seconds(self) -> float | None:
        return None if self.timeout is None else parse_duration(self.timeout)

    @property
    def has_tokens(self) -> bool:
        """Whether a field holds a ``$token`` to substitute at each attempt: worked out once
        for these params (:meth:`DAG.validate` works it out again)."""
        cached = self._tokens
        if cached is None or cached[0] is not self.params:
            cached = self._tokens = (self.params, has_tokens(self.params))
        return cached[1]

    @property
    def pools(self) -> tuple[str, ...]:
        if self.pool is None:
            return ()
        return (self.pool,) if isinstance(self.pool, str) else tuple(self.pool)

    # -- edges ----------------------------------------------------------------------------
    def __rshift__(self, other: Job | Sequence[Job]) -> Job | Sequence[Job]:
        for target in [other] if isinstance(other, Job) else other:
            self._dag_for(target).add_edge(self, target)
        return other

    def __rrshift__(self, other: Sequence[Job]) -> Job:
        for source in other:
            source._dag_for(self).add_edge(source, self)
        return self

    def __lshift__(self, other: Job | Sequence[Job]) -> Job | Sequence[Job]:
        for source in [other] if isinstance(other, Job) else other:
            source._dag_for(self).add_edge(source, self)
        return other

    def __rlshift__(self, other: Sequence[Job]) -> Job:
        for target in other:
            self._dag_for(target).add_edge(self, target)
        return self

    def _dag_for(self, other: Job) -> DAG:
        dag = self.dag or other.dag
        if dag is None:
            raise ValueError(f"job {self.id!r}: make jobs inside `with DAG(...)` to connect them")
        return dag

    def __repr__(self) -> str:
        return f"Job({self.id!r}, type={self.type!r})"


class DAG:
    """A named graph of jobs with its parameters, limits, schedule and webhooks."""

    def __init__(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        fail_fast: bool = False,
        concurrency: int | None = None,
        pools: Mapping[str, int] | None = None,
        timeout: float | str | None = None,
        schedule: Mapping[str, Any] | None = None,
        webhooks: list[dict[str, Any]] | None = None,
        description: str | None = None,
        source: str | None = None,
    ) -> None:
        self.name = name
        self.params: dict[str, Any] = dict(params or {})
        self.fail_fast = fail_fast
        self.concurrency = concurrency
        self.pools: dict[str, int] = dict(pools or {})
        self.timeout = timeout
        self.schedule = dict(schedule) if schedule else None
        self.webhooks = list(webhooks or [])
        self.description = description
        self.source = source
        self.jobs: dict[str, Job] = {}
        # the graph: each vertex (a job id, or an unknown one an edge names) -> its successors,
        # and -> its predecessors, in the order added (the order networkx would keep)
        self._successors: dict[str, dict[str, None]] = {}
        self._predecessors: dict[str, dict[str, None]] = {}
        self._graph: Any = None  # the networkx graph, built when first asked for
        self._duplicates: list[str] = []
        self._token: contextvars.Token[DAG | None] | None = None

    def __enter__(self) -> DAG:
        self._token = _current_dag.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _current_dag.reset(self._token)
        self._token = None

    def add(self, job: Job) -> Job:
        if job.id in self.jobs:
            self._duplicates.append(job.id)
            return job
        job.dag = self
        self.jobs[job.id] = job
        self._add_vertex(job.id)
        return job

    def add_edge(self, source: Job | str, target: Job | str) -> None:
        s = source.id if isinstance(source, Job) else source
        t = target.id if isinstance(target, Job) else target
        self._add_vertex(s)
        self._add_vertex(t)
        self._successors[s][t] = None
        self._predecessors[t][s] = None
        self._graph = None

    def _add_vertex(self, vertex: str) -> None:
        if vertex not in self._successors:
            self._successors[vertex] = {}
            self._predecessors[vertex] = {}
            self._graph = None

    @property
    def vertices(self) -> list[str]:
        """Every vertex: the jobs, and any unknown vertex an edge names (validation refuses
        those), in the order added."""
        return list(self._successors)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """Every edge ``(source, target)``, grouped by source in the order of :attr:`vertices`."""
        return [(s, t) for s, targets in self._successors.items() for t in targets]

    @property
    def successors(self) -> Mapping[str, Mapping[str, None]]:
        """Each vertex -> its successors (read only: :meth:`add_edge` changes the graph)."""
        return self._successors

    @property
    def graph(self) -> Any:
        """The graph as a ``networkx.DiGraph``, built on first use (networkx is imported then,
        not before). A copy: changing it does not change the DAG; :meth:`add_edge` does."""
        if self._graph is None:
            import networkx as nx

            graph = nx.DiGraph()
            graph.add_nodes_from(self._successors)
            graph.add_edges_from(self.edges)
            self._graph = graph
        return self._graph

    @property
    def timeout_seconds(self) -> float | None:
        return None if self.timeout is None else parse_duration(self.timeout)

    def upstream(self, job_id: str) -> list[str]:
        return list(self._predecessors[job_id])

    def downstream(self, job_id: str) -> list[str]:
        return list(self._successors[job_id])

    def in_degree(self, job_id: str) -> int:
        """How many jobs ``job_id`` depends on."""
        return len(self._predecessors[job_id])

    def topological(self) -> Iterator[str]:
        """The job ids, each after those it depends on; ties in alphabetical order."""
        return topological(self._successors)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs.values())

    def __len__(self) -> int:
        return len(self.jobs)

    def __repr__(self) -> str:
        return f"DAG({self.name!r}, jobs={len(self.jobs)})"

    def validate(self, known_types: Iterable[str] | None = None) -> None:
        """Raise :class:`DagValidationError` listing every problem found."""
        validate_dag(self, known_types)
        for job in self:
            job._tokens = None  # the params may have changed since a run
            job.has_tokens  # noqa: B018 - worked out here, not in each run
