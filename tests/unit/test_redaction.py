"""Masking secrets by value: the rule (long secrets anywhere, short ones as whole tokens), the
secrets a connection holds (base-URL path, headers), the connector choke point, and the
credential headers ``graph`` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import logs
from orchestrator.connections import connection_secrets, load_connections
from orchestrator.connectors.base import (
    CancelResult,
    ConnectorBase,
    PollResult,
    RemoteHandle,
    RemoteStatus,
    Submission,
)
from orchestrator.errors import PermanentError
from orchestrator.model.formats import render
from orchestrator.model.loader import dag_from_json
from orchestrator.runtime.connectors import MaskedConnector, RedactedError

LONG = "tok-3c9f2a7b51d8e6"  # masked anywhere
SHORT = "nightly"  # masked only as a whole token


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers its own secrets (the registry is the process's)."""
    monkeypatch.setattr(logs, "_SECRETS", set())
    monkeypatch.setattr(logs, "_SHAPES", set())
    monkeypatch.setattr(logs, "_PATTERN", None, raising=False)


# -- the rule ---------------------------------------------------------------------------------


def test_a_short_secret_inside_a_word_is_not_masked() -> None:
    logs.add_secrets([SHORT])
    for text in ("nightly_sales", "nightlyrun", "overnightly", "nightly2"):
        assert logs.redact_text(text) == text


def test_a_short_secret_as_a_whole_token_is_masked() -> None:
    logs.add_secrets([SHORT])
    assert logs.redact_text("password nightly refused") == "password *** refused"
    assert logs.redact_text("user:nightly@host") == "user:***@host"
    assert logs.redact_text('{"p": "nightly"}') == '{"p": "***"}'
    assert logs.redact_text("nightly") == "***"


def test_a_long_secret_is_masked_even_inside_a_longer_string() -> None:
    logs.add_secrets([LONG])
    assert logs.redact_text(f"Bearer {LONG}") == "Bearer ***"
    assert logs.redact_text(f"x{LONG}y") == "x***y"


def test_encoded_forms_of_a_secret_are_masked() -> None:
    secret = 'p@ss/wo"rd:12345'
    logs.add_secrets([secret])
    assert logs.redact_text("url p%40ss%2Fwo%22rd%3A12345 here") == "url *** here"
    assert logs.redact_text(json.dumps({"echo": secret})) == '{"echo": "***"}'


def test_values_too_short_to_be_secrets_are_not_masked() -> None:
    logs.add_secrets(["abc", ""])
    assert not logs.has_secrets()
    assert logs.redact_text("abc") == "abc"


def test_redact_masks_strings_and_keys_of_json_values() -> None:
    logs.add_secrets([LONG])
    value = {"out": [LONG, 3, None, {LONG: f"a {LONG}"}], "n": 1.5}
    assert logs.redact(value) == {"out": ["***", 3, None, {"***": "a ***"}], "n": 1.5}


def test_nothing_registered_leaves_everything_as_it_is() -> None:
    value = {"a": ["b"]}
    assert logs.redact(value) is value
    assert logs.redact_text("nightly") == "nightly"


# -- what a connection holds ------------------------------------------------------------------


def _connections(tmp_path: Path, body: str, env: dict[str, str]) -> dict[str, Any]:
    path = tmp_path / "connections.toml"
    path.write_text(body)
    return load_connections(path, environ=env)


def test_an_env_value_in_the_base_url_path_is_a_secret(tmp_path: Path) -> None:
    conns = _connections(
        tmp_path,
        '[api]\ntype = "http"\nbase_url = "${BASE}/t/${TOKEN}/api"\n',
        {"BASE": "https://api.example:8443", "TOKEN": "t0k3n-in-path"},
    )
    api = conns["api"]
    assert api.base_url == "https://api.example:8443/t/t0k3n-in-path/api"
    assert connection_secrets(conns) == {"t0k3n-in-path"}  # not the host from ${BASE}
    assert "t0k3n-in-path" not in repr(api)
    assert "https://api.example:8443/t/***/api" in repr(api)
    logs.add_secrets(connection_secrets(conns))
    shown = logs.redact_text(f"GET {api.base_url}/jobs/1: HTTP 404")
    assert shown == "GET https://api.example:8443/t/***/api/jobs/1: HTTP 404"


def test_a_literal_base_url_path_holds_no_secret(tmp_path: Path) -> None:
    conns = _connections(
        tmp_path,
        '[api]\ntype = "http"\nbase_url = "${BASE}/generic"\n',
        {"BASE": "http://127.0.0.1:8765"},
    )
    assert connection_secrets(conns) == set()


@pytest.mark.parametrize(
    ("env", "secrets"),
    [
        ({}, set()),  # the default is written in the file: not a secret
        ({"TOKEN": ""}, set()),
        ({"TOKEN": "t0k3n-from-env"}, {"t0k3n-from-env"}),
    ],
)
def test_a_default_in_the_base_url_path_is_no_secret_but_its_variable_is(
    tmp_path: Path, env: dict[str, str], secrets: set[str]
) -> None:
    conns = _connections(
        tmp_path,
        '[api]\ntype = "http"\nbase_url = "${BASE:-http://127.0.0.1:8765}/t/${TOKEN:-generic}/x"\n',
        env,
    )
    assert connection_secrets(conns) == secrets
    logs.add_secrets(connection_secrets(conns))
    shown = logs.redact_text(f"GET {conns['api'].base_url}/jobs: HTTP 404 (generic job)")
    assert "generic job" in shown
    assert ("***" in shown) == bool(secrets)


def test_credential_headers_and_the_basic_pair_are_secrets(tmp_path: Path) -> None:
    conns = _connections(
        tmp_path,
        '[api]\ntype = "http"\nbase_url = "https://api.example"\n'
        'username = "svc"\npassword = "hunter22"\n'
        '[api.headers]\nX-Api-Key = "${KEY}"\nAuthorization = "Token abcd-1234"\nX-Team = "data"\n',
        {"KEY": "k3y-from-env"},
    )
    secrets = connection_secrets(conns)
    assert {"hunter22", "k3y-from-env", "Token abcd-1234", "abcd-1234"} <= secrets
    assert "c3ZjOmh1bnRlcjIy" in secrets  # base64("svc:hunter22"), as an Authorization echo
    assert "data" not in secrets


# -- the connector choke point ------------------------------------------------------------------


class Echoing(ConnectorBase):
    """A remote that echoes the token in everything it sends back."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.handles: list[RemoteHandle] = []

    async def submit(self, submission: Submission) -> RemoteHandle:
        if self.fail is not None:
            raise self.fail
        return {"id": "j1"}

    async def poll(self, handle: RemoteHandle) -> PollResult:
        self.handles.append(handle)
        if self.fail is not None:
            raise self.fail
        return PollResult(
            RemoteStatus.FAILED,
            remote_status=f"FAILED ({LONG})",
            error=f"token {LONG} refused",
            outputs={"echo": {"auth": f"Bearer {LONG}"}},
            log_tail=f"using {LONG}\n",
            next_poll=2.0,
        )

    async def cancel(self, handle: RemoteHandle) -> CancelResult:
        return CancelResult(True, f"cancelled with {LONG}")


SUBMISSION = Submission("d", "r", "j", 1, "r/j/1", {})


async def test_what_a_remote_sends_back_is_masked_before_the_engine_sees_it() -> None:
    logs.add_secrets([LONG])
    inner = Echoing()
    connector = MaskedConnector(inner)
    handle = await connector.submit(SUBMISSION)
    result = await connector.poll(handle)
    assert inner.handles[0] is handle  # the handle passes as it is (connectors update it)
    assert result.status is RemoteStatus.FAILED
    assert result.remote_status == "FAILED (***)"
    assert result.error == "token *** refused"
    assert result.outputs == {"echo": {"auth": "Bearer ***"}}
    assert result.log_tail == "using ***\n"
    assert result.next_poll == 2.0
    assert (await connector.cancel(handle)).message == "cancelled with ***"


async def test_a_connector_error_is_masked_and_keeps_its_type() -> None:
    logs.add_secrets([LONG])
    error = PermanentError(f"HTTP 400: bad token {LONG}", status=400, detail={"got": LONG})
    connector = MaskedConnector(Echoing(fail=error))
    with pytest.raises(PermanentError) as caught:
        await connector.submit(SUBMISSION)
    assert caught.value is error
    assert str(caught.value) == "HTTP 400: bad token ***"
    assert caught.value.status == 400
    assert caught.value.detail == {"got": "***"}


async def test_an_exception_that_renders_itself_is_replaced() -> None:
    class Odd(Exception):
        def __str__(self) -> str:
            return f"odd {LONG}"

    logs.add_secrets([LONG])
    connector = MaskedConnector(Echoing(fail=Odd()))
    with pytest.raises(RedactedError, match=r"^Odd: odd \*\*\*$"):
        await connector.poll({"id": "j1"})


# -- graph ---------------------------------------------------------------------------------------


def test_graph_masks_credential_headers_of_webhooks_and_jobs() -> None:
    dag = dag_from_json(
        {
            "name": "hooks",
            "webhooks": [
                {
                    "name": "ops",
                    "url": "https://hooks.example/ops",
                    "triggerEvent": "onJobFailure",
                    "headers": {
                        "Authorization": "Bearer s3cr3t-bearer",
                        "X-Api-Key": "k3y-value",
                        "Cookie": "session=c00kie",
                        "X-Team": "data",
                    },
                }
            ],
            "jobs": {
                "call": {
                    "type": "fake",
                    "submit": {"headers": {"Proxy-Authorization": "Basic dXNlcjpwdw=="}},
                }
            },
            "jobGraph": {"vertices": ["call"], "edges": []},
        }
    )
    for fmt in ("json", "dot", "mermaid"):
        out = render(dag, fmt)
        for secret in ("s3cr3t-bearer", "k3y-value", "c00kie", "dXNlcjpwdw=="):
            assert secret not in out
    data = json.loads(render(dag, "json"))
    headers = data["webhooks"][0]["headers"]
    assert headers == {
        "Authorization": "Bearer …",
        "X-Api-Key": "…",
        "Cookie": "…",
        "X-Team": "data",
    }
    assert data["jobs"]["call"]["submit"]["headers"] == {"Proxy-Authorization": "Basic …"}
    assert dag.webhooks[0]["headers"]["Authorization"] == "Bearer s3cr3t-bearer"  # kept
