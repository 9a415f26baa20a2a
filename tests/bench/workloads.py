"""Benchmark workloads, shared by the benchmark scripts."""

from __future__ import annotations

import random
from typing import Any

import networkx as nx

from orchestrator.model.dag import DAG, Job


def layered_graph(n: int, *, layers: int = 10, parents: int = 2, seed: int = 42) -> Any:
    """``layers`` layers of ``n / layers`` nodes; each node past the first layer depends on
    ``parents`` random nodes of the layer before (seeded)."""
    rng = random.Random(seed)
    width = n // layers
    graph = nx.DiGraph()
    previous: list[str] = []
    for layer in range(layers):
        current = [f"n{layer}_{i}" for i in range(width)]
        graph.add_nodes_from(current)
        if previous:
            for node in current:
                for parent in rng.sample(previous, parents):
                    graph.add_edge(parent, node)
        previous = current
    return graph


async def noop(ctx: Any) -> None:
    """The callable of the ``python`` workload: an async function that does nothing."""


def layered_dag(n: int, **fields: Any) -> DAG:
    """The same graph as a DAG of instantaneous ``fake`` jobs (or ``fields`` for each job)."""
    graph = layered_graph(n)
    with DAG(f"bench_{n}") as dag:
        for node in graph.nodes:
            Job(
                node, fields.get("type", "fake"), **{k: v for k, v in fields.items() if k != "type"}
            )
        for s, t in graph.edges:
            dag.add_edge(s, t)
    return dag


def python_dag(n: int) -> DAG:
    """The same graph as a DAG of ``python`` jobs calling an async no-op."""
    return layered_dag(n, type="python", call=noop)
