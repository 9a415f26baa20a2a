"""The OCAPI simulator's ``job_execution_search``: the query documents it understands
(``match_all_query``, ``term_query`` with ``is``/``one_of``, ``bool_query``) over the fields the
seed lists as searchable, and sorting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SEARCHABLE = ("id", "job_id", "start_time", "end_time", "status")
SORTABLE = ("job_id", "start_time", "end_time", "status")


class QueryError(Exception):
    pass


def sort_key(field: str) -> Callable[[dict[str, Any]], str]:
    return lambda doc: str(doc.get(field) or "")


def matches(query: dict[str, Any], doc: dict[str, Any]) -> bool:
    if "match_all_query" in query:
        return True
    if "term_query" in query:
        term = query["term_query"]
        fields, values = term.get("fields") or [], term.get("values") or []
        operator = term.get("operator", "is")
        if operator not in ("is", "one_of") or (operator == "is" and len(values) != 1):
            raise QueryError(f"term_query operator {operator!r} with {len(values)} values")
        bad = [f for f in fields if f not in SEARCHABLE]
        if bad or not fields:
            raise QueryError(f"the field {(bad or [''])[0]!r} is not searchable")
        wanted = {str(v).lower() for v in values}
        return any(str(doc.get(f, "")).lower() in wanted for f in fields)
    if "bool_query" in query:
        bool_query = query["bool_query"]
        must = bool_query.get("must") or []
        should = bool_query.get("should") or []
        must_not = bool_query.get("must_not") or []
        return (
            all(matches(q, doc) for q in must)
            and (not should or any(matches(q, doc) for q in should))
            and not any(matches(q, doc) for q in must_not)
        )
    raise QueryError(f"unsupported query {sorted(query)}")
