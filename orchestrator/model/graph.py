"""The job graph's algorithms, on plain adjacency dicts (vertex -> its successors, in the order
they were added): a cycle, and the topological order. What a run needs, without importing
networkx (a DAG builds its networkx graph only when asked for it: :attr:`DAG.graph`)."""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator, Mapping
from typing import TypeVar

V = TypeVar("V", bound=Hashable)
Adjacency = Mapping[V, Mapping[V, object]]


def find_cycle(successors: Adjacency[V]) -> list[V] | None:
    """The vertices of a cycle, in order (the edge back to the first closes it), or ``None``
    when the graph has none. Depth first from each vertex in turn, as ``networkx.find_cycle``:
    the cycle reported is the first one met."""
    on_path: dict[V, bool] = {}  # True while on the current path, False once done
    for root in successors:
        if root in on_path:
            continue
        path = [root]
        on_path[root] = True
        stack = [iter(successors[root])]
        while stack:
            for child in stack[-1]:
                seen = on_path.get(child)
                if seen is None:
                    on_path[child] = True
                    path.append(child)
                    stack.append(iter(successors.get(child, ())))
                    break
                if seen:
                    return path[path.index(child) :]
            else:
                stack.pop()
                on_path[path.pop()] = False
    return None


def topological(successors: Adjacency[str]) -> Iterator[str]:
    """The vertices, each after all its predecessors; among those ready at once, the least
    first (``networkx.lexicographical_topological_sort``). ``ValueError`` on a cycle."""
    order = {vertex: i for i, vertex in enumerate(successors)}
    waiting: dict[str, int] = {}
    for children in successors.values():
        for child in children:
            waiting[child] = waiting.get(child, 0) + 1
    ready = [(vertex, order[vertex]) for vertex in successors if vertex not in waiting]
    heapq.heapify(ready)
    while ready:
        vertex, _ = heapq.heappop(ready)
        for child in successors[vertex]:
            waiting[child] -= 1
            if not waiting[child]:
                del waiting[child]
                heapq.heappush(ready, (child, order[child]))
        yield vertex
    if waiting:
        raise ValueError("the graph has a cycle")
