"""The job graph without networkx: the order and the cycles networkx finds, networkx's graph
built on first use, and the registry's table of job types matching their modules."""

from __future__ import annotations

import importlib
import random

import networkx as nx
import pytest

from orchestrator import DAG, Job
from orchestrator.connectors.registry import _MODULES, job_types
from orchestrator.model.graph import find_cycle, topological


def _random_graph(rng: random.Random, n: int, edges: int) -> dict[str, dict[str, None]]:
    vertices = [f"v{rng.randrange(10 * n)}" for _ in range(n)]
    graph: dict[str, dict[str, None]] = {v: {} for v in vertices}
    for _ in range(edges):
        s, t = rng.choice(vertices), rng.choice(vertices)
        graph[s][t] = None
    return graph


def _nx(graph: dict[str, dict[str, None]]) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(graph)
    g.add_edges_from((s, t) for s, ts in graph.items() for t in ts)
    return g


def _acyclic(rng: random.Random, n: int) -> dict[str, dict[str, None]]:
    order = [f"j{i}" for i in rng.sample(range(10 * n), n)]
    graph: dict[str, dict[str, None]] = {v: {} for v in rng.sample(order, n)}
    for i, t in enumerate(order[1:], 1):
        for s in rng.sample(order[:i], min(i, 2)):
            graph[s][t] = None
    return graph


@pytest.mark.parametrize("seed", range(30))
def test_topological_order_is_networkx_lexicographical_order(seed: int) -> None:
    graph = _acyclic(random.Random(seed), 40)
    assert list(topological(graph)) == list(nx.lexicographical_topological_sort(_nx(graph)))


@pytest.mark.parametrize("seed", range(60))
def test_find_cycle_finds_one_exactly_when_networkx_does(seed: int) -> None:
    rng = random.Random(seed)
    graph = _random_graph(rng, rng.randrange(1, 30), rng.randrange(0, 40))
    cycle = find_cycle(graph)
    assert (cycle is None) == nx.is_directed_acyclic_graph(_nx(graph))
    if cycle is not None:
        edges = list(zip(cycle, [*cycle[1:], cycle[0]], strict=True))
        assert all(t in graph[s] for s, t in edges)
        assert len(set(cycle)) == len(cycle)
        assert edges == [edge[:2] for edge in nx.find_cycle(_nx(graph))]


def test_a_long_cycle_needs_no_recursion() -> None:
    n = 50_000
    graph = {f"j{i}": {f"j{(i + 1) % n}": None} for i in range(n)}
    cycle = find_cycle(graph)
    assert cycle is not None
    assert len(cycle) == n
    with pytest.raises(ValueError, match="cycle"):
        list(topological(graph))


def test_the_networkx_graph_is_built_on_first_use_and_follows_new_edges() -> None:
    with DAG("g") as dag:
        a, b, c = Job("a", type="fake"), Job("b", type="fake"), Job("c", type="fake")
        a >> [c, b]
    graph = dag.graph
    assert isinstance(graph, nx.DiGraph)
    assert list(graph.nodes) == dag.vertices == ["a", "b", "c"]
    assert list(graph.edges) == dag.edges == [("a", "c"), ("a", "b")]
    assert dag.graph is graph  # built once
    b >> c
    assert list(dag.graph.edges) == [("a", "c"), ("a", "b"), ("b", "c")]
    assert dag.in_degree("c") == 2
    assert dag.upstream("c") == ["a", "b"]
    assert list(dag.topological()) == ["a", "b", "c"]


def test_the_registry_names_each_job_type_where_it_is_defined() -> None:
    for module in sorted(set(_MODULES.values())):
        for job_type in importlib.import_module(module).JOB_TYPES:
            assert _MODULES.get(job_type.name) == module, job_type.name
    assert {name: job_types()[name].name for name in job_types()} == {n: n for n in _MODULES}
    with pytest.raises(KeyError):
        job_types()["nope"]
    assert "nope" not in job_types()
    assert "command" in job_types()
