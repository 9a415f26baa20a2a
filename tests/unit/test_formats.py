"""Writing a DAG back: JSON loads back to the same DAG; dot and mermaid show the whole graph."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from orchestrator.model.dag import DAG, Job
from orchestrator.model.formats import render
from orchestrator.model.loader import dag_from_json
from orchestrator.model.trigger_rules import TriggerRule

SECRET = "whsec_dGhpcyBpcyBhIHNlY3JldCBrZXk9"
JOB_SECRET = "whsec_am9iIHNlY3JldCBrZXkgaGVyZQ=="

SPEC: dict[str, Any] = {
    "name": "nightly_sales",
    "description": "sales, every night",
    "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"},
    "params": {"region": "02"},
    "failFast": True,
    "concurrency": 4,
    "pools": {"db": 2},
    "timeout": "6h",
    "webhooks": [
        {
            "name": "ops",
            "url": "https://hooks.example/ops",
            "triggerEvent": "onJobFailure",
            "body": {"text": "$dagName run $runId: $runStatus"},
            "secretKey": SECRET,
        }
    ],
    "jobs": {
        "extract": {
            "type": "command",
            "command": ["python", "extract.py", "--region", "$region"],
            "retries": {"attempts": 3, "backoff": 2.0, "base": "5s", "cap": "10m"},
            "timeout": "1h30m",
            "pool": "db",
            "priority": 5,
        },
        "load": {
            "type": "fake",
            "duration": "2s",
            "onAmbiguousSubmit": "fail",
            "webhooks": [
                {
                    "name": "job-hook",
                    "url": "https://hooks.example/job",
                    "triggerEvent": "onJobDone",
                    "secretKey": JOB_SECRET,
                }
            ],
        },
        "audit": {"type": "fake", "triggerRule": "one_failed"},
        "report": {
            "type": "command",
            "command": "echo done $runId",
            "triggerRule": "all_done",
            "retries": 2,
        },
    },
    "jobGraph": {
        "vertices": ["extract", "load", "audit", "report"],
        "edges": [
            {"source": "extract", "target": "load"},
            {"source": "extract", "target": "audit"},
            {"source": "load", "target": "report"},
            {"source": "audit", "target": "report"},
        ],
    },
}


def _dag(spec: dict[str, Any] = SPEC) -> DAG:
    dag = dag_from_json(json.loads(json.dumps(spec)), source="spec.json")
    dag.validate()
    return dag


def _reload(dag: DAG) -> DAG:
    again = dag_from_json(json.loads(render(dag, "json")), source="rendered.json")
    again.validate()
    return again


def test_json_round_trip_keeps_jobs_edges_and_settings() -> None:
    dag = _dag()
    again = _reload(dag)
    assert list(again.jobs) == list(dag.jobs)
    assert (
        set(again.graph.edges)
        == set(dag.graph.edges)
        == {
            ("extract", "load"),
            ("extract", "audit"),
            ("load", "report"),
            ("audit", "report"),
        }
    )
    for job_id, job in dag.jobs.items():
        other = again.jobs[job_id]
        assert other.type == job.type
        assert other.params == job.params
        assert other.rule is job.rule
        assert other.retry_policy == job.retry_policy
        assert other.timeout_seconds == job.timeout_seconds
        assert other.priority == job.priority
        assert other.pools == job.pools
        assert other.on_ambiguous_submit == job.on_ambiguous_submit
        assert other.vertex == job.vertex
    assert again.jobs["audit"].rule is TriggerRule.ONE_FAILED
    assert again.jobs["report"].rule is TriggerRule.ALL_DONE
    assert again.jobs["extract"].rule is TriggerRule.ALL_SUCCESS
    assert again.jobs["extract"].retry_policy.attempts == 3
    assert again.jobs["extract"].retry_policy.base == 5.0
    assert again.jobs["extract"].retry_policy.cap == 600.0
    assert again.jobs["report"].retry_policy.attempts == 2
    assert again.jobs["load"].retries is None
    assert again.jobs["extract"].timeout_seconds == 5400.0
    assert again.jobs["load"].timeout is None
    assert (again.name, again.description, again.params) == (dag.name, dag.description, dag.params)
    assert again.schedule == dag.schedule
    assert again.fail_fast is True
    assert again.concurrency == 4
    assert again.pools == {"db": 2}
    assert again.timeout_seconds == 6 * 3600


def test_json_round_trip_keeps_integer_vertices() -> None:
    spec = {
        "name": "ints",
        "jobs": {"1": {"type": "fake"}, "2": {"type": "fake"}, "10": {"type": "fake"}},
        "jobGraph": {
            "vertices": [1, 2, 10],
            "edges": [{"source": 1, "target": 2}, {"source": 2, "target": 10}],
        },
    }
    dag = _dag(spec)
    out = json.loads(render(dag, "json"))
    assert out["jobGraph"] == spec["jobGraph"]
    again = _reload(dag)
    assert {job_id: job.vertex for job_id, job in again.jobs.items()} == {"1": 1, "2": 2, "10": 10}
    assert set(again.graph.edges) == {("1", "2"), ("2", "10")}


def test_json_from_python_api_loads_back() -> None:
    with DAG("py", params={"day": "mon"}) as dag:
        a = Job("a", "fake", duration="1s", timeout=90, retries={"attempts": 2})
        b = Job("b", "fake", trigger_rule=TriggerRule.NONE_FAILED)
        c = Job("c", "command", command=["echo", "$day"], trigger_rule="always")
        a >> [b, c]
        b >> c
    dag.validate()
    again = _reload(dag)
    assert set(again.graph.edges) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert again.jobs["a"].timeout_seconds == 90.0
    assert again.jobs["a"].retry_policy.attempts == 2
    assert again.jobs["b"].rule is TriggerRule.NONE_FAILED
    assert again.jobs["c"].rule is TriggerRule.ALWAYS
    assert again.jobs["c"].params == {"command": ["echo", "$day"]}
    assert again.params == {"day": "mon"}


def test_dot_contains_every_node_edge_and_rule() -> None:
    dag = _dag()
    dot = render(dag, "dot")
    assert dot.startswith('digraph "nightly_sales" {')
    nodes = re.findall(r'^  "([^"]+)" \[label="([^"]+)"\];$', dot, re.M)
    assert [job_id for job_id, _ in nodes] == list(dag.topological())
    for job_id, label in nodes:
        assert label.startswith(job_id)
        assert label.endswith(dag.jobs[job_id].type)
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)"(?: \[label="([^"]+)"\])?;$', dot, re.M)
    assert {(s, t) for s, t, _ in edges} == set(dag.graph.edges)
    labels = {(s, t): label for s, t, label in edges}
    assert labels[("extract", "audit")] == "one_failed"
    assert labels[("load", "report")] == labels[("audit", "report")] == "all_done"
    assert labels[("extract", "load")] == ""  # all_success is the default, not labelled


def test_mermaid_contains_every_node_edge_and_rule() -> None:
    dag = _dag()
    text = render(dag, "mermaid")
    assert text.startswith("flowchart LR\n")
    nodes = dict(re.findall(r'^  (n\d+)\["([^<]+)<br/>[^"]+"\]$', text, re.M))
    assert sorted(nodes.values()) == sorted(dag.jobs)
    for job_id, job in dag.jobs.items():
        assert f'["{job_id}<br/>{job.type}"]' in text
    edges = re.findall(r"^  (n\d+) (?:-->|-- (\w+) -->) (n\d+)$", text, re.M)
    assert {(nodes[s], nodes[t]) for s, _, t in edges} == set(dag.graph.edges)
    labels = {(nodes[s], nodes[t]): rule for s, rule, t in edges}
    assert labels[("extract", "audit")] == "one_failed"
    assert labels[("audit", "report")] == "all_done"
    assert labels[("extract", "load")] == ""


def test_dot_label_breaks_the_line_between_id_and_type() -> None:
    with DAG("labels") as dag:
        Job("a", "fake")
    assert '"a" [label="a\\nfake"];' in render(dag, "dot")


def test_dot_and_mermaid_quote_awkward_ids() -> None:
    with DAG("q") as dag:
        a = Job('say "hi"', "fake")
        b = Job("b", "fake")
        a >> b
    assert '"say \\"hi\\"" -> "b";' in render(dag, "dot")
    assert "say #quot;hi#quot;" in render(dag, "mermaid")


@pytest.mark.parametrize("fmt", ["json", "dot", "mermaid"])
def test_secret_key_is_masked_in_every_output(fmt: str) -> None:
    out = render(_dag(), fmt)
    assert SECRET not in out
    assert JOB_SECRET not in out
    assert SECRET[:-4] not in out
    assert JOB_SECRET[:-4] not in out


def test_json_mask_keeps_last_four_characters() -> None:
    out = json.loads(render(_dag(), "json"))
    assert out["webhooks"][0]["secretKey"] == "whsec_…" + SECRET[-4:]
    assert out["jobs"]["load"]["webhooks"][0]["secretKey"] == "whsec_…" + JOB_SECRET[-4:]
    assert out["webhooks"][0]["url"] == "https://hooks.example/ops"  # the rest is kept


def test_short_secret_is_masked_completely() -> None:
    spec = json.loads(json.dumps(SPEC))
    spec["webhooks"][0]["secretKey"] = "short1234"
    out = render(_dag(spec), "json")
    assert "1234" not in out
    assert json.loads(out)["webhooks"][0]["secretKey"] == "…"


def test_secret_key_list_is_masked() -> None:
    spec = json.loads(json.dumps(SPEC))
    spec["webhooks"][0]["secretKey"] = [SECRET, "whsec_bmV4dCBzZWNyZXQga2V5IGhlcmU="]
    out = render(_dag(spec), "json")
    assert SECRET not in out
    assert "whsec_bmV4dCBzZWNyZXQga2V5IGhlcmU=" not in out


def test_masking_does_not_change_the_dag() -> None:
    dag = _dag()
    render(dag, "json")
    assert dag.webhooks[0]["secretKey"] == SECRET
    assert dag.jobs["load"].webhooks[0]["secretKey"] == JOB_SECRET


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        render(_dag(), "yaml")
