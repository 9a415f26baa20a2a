"""Writing a DAG back: JSON (the loadable format), Graphviz dot, Mermaid."""

from __future__ import annotations

import json
from typing import Any

from ..logs import is_credential_header
from .dag import DAG, Job
from .durations import format_duration
from .refs import DEFAULT_MAP_LIMIT
from .retry import RetryPolicy
from .trigger_rules import TriggerRule

SECRET_MASK = "whsec_…"


def mask_webhooks(webhooks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``secretKey`` is write-only: shown back as a mask keeping its last four characters."""
    masked = []
    for hook in webhooks:
        hook = dict(hook)
        secret = hook.get("secretKey")
        if isinstance(secret, str) and secret:
            hook["secretKey"] = _mask(secret)
        elif isinstance(secret, list):
            hook["secretKey"] = [_mask(s) if isinstance(s, str) else "…" for s in secret]
        if isinstance(hook.get("headers"), dict):
            hook["headers"] = mask_headers(hook["headers"])
        masked.append(hook)
    return masked


def mask_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Credential-bearing headers (``Authorization``, ``Cookie``, ``X-Api-Key``, ...; see
    :func:`orchestrator.logs.is_credential_header`) shown as their auth scheme and a mask:
    ``Bearer …``, else ``…``. Other headers are kept."""
    return {
        name: _mask_header(value) if is_credential_header(str(name)) else value
        for name, value in headers.items()
    }


def _mask_header(value: Any) -> str:
    scheme, _, rest = str(value).strip().partition(" ")
    return f"{scheme} …" if rest.strip() and scheme.isalpha() else "…"


def _mask_params(value: Any) -> Any:
    """A job's fields with the credential headers of every ``headers`` object masked (the
    ``http`` job type's ``submit.headers``, say)."""
    if isinstance(value, dict):
        return {
            k: mask_headers(v) if k == "headers" and isinstance(v, dict) else _mask_params(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_params(v) for v in value]
    return value


def _mask(secret: str) -> str:
    return f"{SECRET_MASK}{secret[-4:]}" if len(secret) > 12 else "…"


def job_to_json(job: Job, *, mask: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": job.type}
    if job.connection:
        out["connection"] = job.connection
    if job.description:
        out["description"] = job.description
    out.update(_mask_params(job.params) if mask else job.params)
    if TriggerRule(job.trigger_rule) is not TriggerRule.ALL_SUCCESS:
        out["triggerRule"] = TriggerRule(job.trigger_rule).value
    if job.retries is not None:
        policy = job.retries if isinstance(job.retries, RetryPolicy) else job.retry_policy
        out["retries"] = policy.to_json()
    if job.timeout is not None:
        out["timeout"] = format_duration(job.timeout_seconds or 0)
    if job.priority:
        out["priority"] = job.priority
    if job.pool is not None:
        out["pool"] = job.pool if isinstance(job.pool, str) else list(job.pool)
    if job.on_ambiguous_submit:
        out["onAmbiguousSubmit"] = job.on_ambiguous_submit
    if job.webhooks:
        out["webhooks"] = mask_webhooks(job.webhooks) if mask else job.webhooks
    if job.map is not None:
        out["map"] = job.map
        if job.map_limit != DEFAULT_MAP_LIMIT:
            out["mapLimit"] = job.map_limit
    if job.call is not None:
        out["call"] = (
            f"{getattr(job.call, '__module__', '?')}.{getattr(job.call, '__qualname__', '?')}"
        )
    return out


def job_graph(dag: DAG) -> dict[str, Any]:
    """Vertices and edges in the order they were written."""
    vertex = {job_id: job.vertex for job_id, job in dag.jobs.items()}
    return {
        "vertices": list(vertex.values()),
        "edges": [{"source": vertex[s], "target": vertex[t]} for s, t in dag.edges],
    }


def to_json(dag: DAG, *, mask: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"name": dag.name}
    if dag.description:
        out["description"] = dag.description
    if dag.schedule:
        out["schedule"] = dag.schedule
    if dag.params:
        out["params"] = dag.params
    if dag.fail_fast:
        out["failFast"] = True
    if dag.concurrency is not None:
        out["concurrency"] = dag.concurrency
    if dag.pools:
        out["pools"] = dag.pools
    if dag.timeout is not None:
        out["timeout"] = format_duration(dag.timeout_seconds or 0)
    if dag.webhooks:
        out["webhooks"] = mask_webhooks(dag.webhooks) if mask else dag.webhooks
    out["jobs"] = {job_id: job_to_json(job, mask=mask) for job_id, job in dag.jobs.items()}
    out["jobGraph"] = job_graph(dag)
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(dag: DAG) -> str:
    lines = [f"digraph {_quote(dag.name)} {{", "  rankdir=LR;"]
    for job_id in dag.topological():
        label = _quote(job_id)[:-1] + "\\n" + _quote(dag.jobs[job_id].type)[1:]  # a line break
        lines.append(f"  {_quote(job_id)} [label={label}];")
    for s, t in dag.edges:
        rule = TriggerRule(dag.jobs[t].trigger_rule)
        attr = "" if rule is TriggerRule.ALL_SUCCESS else f" [label={_quote(rule.value)}]"
        lines.append(f"  {_quote(s)} -> {_quote(t)}{attr};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(dag: DAG) -> str:
    ids = {job_id: f"n{i}" for i, job_id in enumerate(dag.topological())}

    def label(text: str) -> str:
        return text.replace('"', "#quot;")

    lines = ["flowchart LR"]
    for job_id, node in ids.items():
        lines.append(f'  {node}["{label(job_id)}<br/>{label(dag.jobs[job_id].type)}"]')
    for s, t in dag.edges:
        rule = TriggerRule(dag.jobs[t].trigger_rule)
        arrow = "-->" if rule is TriggerRule.ALL_SUCCESS else f"-- {rule.value} -->"
        lines.append(f"  {ids[s]} {arrow} {ids[t]}")
    return "\n".join(lines) + "\n"


def render(dag: DAG, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json(dag), indent=2) + "\n"
    if fmt == "dot":
        return to_dot(dag)
    if fmt == "mermaid":
        return to_mermaid(dag)
    raise ValueError(f"unknown format {fmt!r} (json, dot, mermaid)")
