"""Webhooks out, end to end: a run's jobs end, deliveries reach a local receiver."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from standardwebhooks import Webhook as StandardWebhook

from orchestrator.engine.records import Run
from orchestrator.model.dag import DAG, Job
from orchestrator.model.states import RunState
from orchestrator.runtime import runs
from orchestrator.runtime.host import RunHost
from orchestrator.store.memory import MemoryStore
from orchestrator.webhooks.signing import sign

from .conftest import Receiver, hook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_WEBHOOK_SCHEDULE", "0,0.2s,0.2s,0.2s")


async def run(dag: DAG, store: MemoryStore | None = None, **kwargs: Any) -> Run:
    dag.validate()
    async with RunHost(store or MemoryStore()) as host:
        return await runs.run_new(host, dag, {}, overlap="allow", **kwargs)


def test_signature_known_answer_vector() -> None:
    signature = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_every_trigger_event_for_every_terminal_job_state(receiver: Receiver) -> None:
    url = receiver.base_url
    hooks = [
        hook("success", f"{url}/success", "onJobSuccess"),
        hook("failure", f"{url}/failure", "onJobFailure"),
        hook("done", f"{url}/done", "onJobDone"),
    ]
    with DAG("events", timeout="2s") as dag:
        ok = Job("ok", "fake", webhooks=hooks)
        bad = Job("bad", "fake", outcome="failure", message='disk "full"', webhooks=hooks)
        Job("slow", "fake", hang=True, timeout=0.3, webhooks=hooks)
        bad >> Job("upstream", "fake", webhooks=hooks)
        ok >> Job("skipped", "fake", trigger_rule="all_failed", webhooks=hooks)
        Job(
            "ambiguous", "fake", submitAmbiguous=True, on_ambiguous_submit="unknown", webhooks=hooks
        )
        Job("stuck", "fake", hang=True, webhooks=hooks)  # cancelled by the run's timeout
    result = await run(dag)
    states = {j: jr.state.value for j, jr in result.jobs.items()}
    assert states == {
        "ok": "succeeded",
        "bad": "failed",
        "slow": "failed",
        "upstream": "upstream_failed",
        "skipped": "skipped",
        "ambiguous": "unknown",
        "stuck": "cancelled",
    }

    def jobs_at(path: str) -> list[str]:
        return sorted(json.loads(r.body)["data"]["job"] for r in receiver.on(path))

    await receiver.wait_for("/done", 7)
    assert jobs_at("/success") == ["ok"]
    assert jobs_at("/failure") == ["bad", "slow"]  # a timeout is a failure
    assert jobs_at("/done") == sorted(states)
    payload = json.loads(next(r.body for r in receiver.on("/failure") if b'"bad"' in r.body))
    assert payload["type"] == "job.failed"
    assert payload["data"]["error"] == 'disk "full"'
    assert payload["data"]["run"] == result.id
    assert payload["data"]["dag"] == "events"
    assert payload["data"]["attempt"] == 1


@pytest.mark.parametrize(
    ("outcome", "run_state", "fired"),
    [
        ("success", "succeeded", {"/success", "/done"}),
        ("failure", "failed", {"/failure", "/done"}),
        ("cancel", "cancelled", {"/done"}),
    ],
)
async def test_dag_level_webhooks_fire_when_the_run_ends(
    receiver: Receiver, outcome: str, run_state: str, fired: set[str]
) -> None:
    url = receiver.base_url
    hooks = [
        hook("success", f"{url}/success", "onJobSuccess"),
        hook("failure", f"{url}/failure", "onJobFailure"),
        hook("done", f"{url}/done", "onJobDone", body={"text": "$dagName run $runId: $runStatus"}),
    ]
    with DAG("dag_level", webhooks=hooks) as dag:
        Job(
            "j",
            "fake",
            outcome="failure" if outcome == "failure" else "success",
            hang=outcome == "cancel",
        )
    store = MemoryStore()
    if outcome == "cancel":
        dag.validate()
        async with RunHost(store) as host, anyio.create_task_group() as tg:

            async def cancel_soon() -> None:
                while not store.runs or not any(
                    a.state == "running" for a in store.attempts.values()
                ):
                    await anyio.sleep(0.01)
                host.cancel_all("cancelled")  # what the command line does on SIGINT

            tg.start_soon(cancel_soon)
            result = await runs.run_new(host, dag, {}, overlap="allow")
    else:
        result = await run(dag, store)
    assert result.state.value == run_state
    await receiver.wait_for("/done")
    await anyio.sleep(0.2)
    assert {r.path for r in receiver.received} == fired
    done = receiver.on("/done")[0]
    assert json.loads(done.body) == {"text": f"dag_level run {result.id}: {run_state}"}


async def test_signed_with_standard_webhooks_and_rotation(receiver: Receiver) -> None:
    old = "whsec_" + "b2xkLXNlY3JldC1rZXktb2YtMzItYnl0ZXMhISEhIQ=="
    with DAG("signed") as dag:
        Job(
            "j",
            "fake",
            webhooks=[hook("h", f"{receiver.base_url}/h", "onJobDone", secretKey=[SECRET, old])],
        )
    await run(dag)
    (got,) = await receiver.wait_for("/h")
    assert len(got.headers["webhook-signature"].split()) == 2
    headers = {k.lower(): v for k, v in got.headers.items()}
    for secret in (SECRET, old):
        StandardWebhook(secret).verify(got.body, headers)  # raises if it does not verify
    tampered = got.body.replace(b"succeeded", b"failed")
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        StandardWebhook(SECRET).verify(tampered, headers)


async def test_retries_after_503_and_429_honour_retry_after_and_keep_the_id(
    receiver: Receiver,
) -> None:
    receiver.script["/h"] = [(503, {"Retry-After": "1"}), (429, {"Retry-After": "1"})]
    store = MemoryStore()
    with DAG("retry") as dag:
        Job("j", "fake", webhooks=[hook("h", f"{receiver.base_url}/h", "onJobDone")])
    await run(dag, store, webhook_wait=10)
    got = await receiver.wait_for("/h", 3)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert got[1].at - got[0].at >= 0.95
    assert got[2].at - got[1].at >= 0.95
    ((delivery, attempts),) = await store.list_deliveries()
    assert delivery.state == "delivered"
    assert [a.status for a in attempts] == [503, 429, 200]


async def test_410_disables_the_webhook(receiver: Receiver) -> None:
    receiver.script["/gone"] = [(410, {})]
    store = MemoryStore()
    with DAG("gone") as dag:
        Job("j", "fake", webhooks=[hook("g", f"{receiver.base_url}/gone", "onJobDone")])
    await run(dag, store)
    await run(dag, store)  # a second run: its delivery is disabled at once
    assert len(receiver.on("/gone")) == 1
    assert [d.state for d, _ in await store.list_deliveries()] == ["disabled", "disabled"]


async def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.script["/moved"] = [(302, {}), (302, {}), (302, {}), (302, {})]
    store = MemoryStore()
    with DAG("moved") as dag:
        Job("j", "fake", webhooks=[hook("m", f"{receiver.base_url}/moved", "onJobDone")])
    await run(dag, store, webhook_wait=5)
    await anyio.sleep(0.5)
    assert receiver.on("/redirected") == []
    ((delivery, attempts),) = await store.list_deliveries()
    assert [a.status for a in attempts] == [302, 302, 302, 302]
    assert delivery.state == "failed"


async def test_a_hanging_receiver_does_not_delay_another(receiver: Receiver) -> None:
    receiver.hang.add("/slow")
    with DAG("lanes") as dag:
        Job(
            "j",
            "fake",
            webhooks=[
                hook("slow", f"{receiver.base_url}/slow", "onJobDone"),
                hook("fast", f"{receiver.base_url}/fast", "onJobDone"),
            ],
        )
    start = anyio.current_time()
    result = await run(dag, webhook_wait=1)
    assert result.state is RunState.SUCCEEDED
    (fast,) = receiver.on("/fast")
    assert fast.at - start < 1.0
    assert len(receiver.on("/slow")) == 1


async def test_get_sends_no_body_and_template_escapes_json(receiver: Receiver) -> None:
    with DAG("shapes") as dag:
        Job(
            "j",
            "fake",
            outcome="failure",
            message='bad "quote"\nnewline',
            webhooks=[
                hook("g", f"{receiver.base_url}/get", "onJobDone", method="get"),
                hook(
                    "t",
                    f"{receiver.base_url}/tmpl",
                    "onJobFailure",
                    body='{"msg": "$jobId failed: $jobError", "attempt": "$attempt"}',
                    headers={"X-Team": "data"},
                ),
            ],
        )
    await run(dag)
    (get,) = await receiver.wait_for("/get")
    (tmpl,) = await receiver.wait_for("/tmpl")
    assert get.method == "GET"
    assert get.body == b""
    assert json.loads(tmpl.body) == {"msg": 'j failed: bad "quote"\nnewline', "attempt": "1"}
    assert tmpl.headers["X-Team"] == "data"
    assert tmpl.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1/x", "loopback"),
        ("http://[::1]/x", "loopback"),
        ("http://169.254.169.254/x", "link-local"),
        ("http://10.0.0.1/x", "private"),
        ("http://2130706433/x", "loopback"),
        ("http://0x7f.1/x", "loopback"),
        ("http://[::ffff:127.0.0.1]/x", "loopback"),
    ],
)
def test_a_private_literal_destination_is_a_warning_not_an_error(
    url: str, allow: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.webhooks.guard import webhook_warnings

    monkeypatch.delenv("ORCHESTRATOR_WEBHOOK_ALLOW", raising=False)
    with DAG("ssrf") as dag:
        Job("j", "fake", webhooks=[hook("h", url, "onJobDone")])
    dag.validate()  # the policy is the sender's: enforced when sending
    (warning,) = webhook_warnings(dag)
    assert "job 'j': webhook 'h': field 'url': " in warning
    assert warning.endswith(f"(allow them with ORCHESTRATOR_WEBHOOK_ALLOW={allow})")
    monkeypatch.setenv("ORCHESTRATOR_WEBHOOK_ALLOW", allow)
    assert webhook_warnings(dag) == []


@pytest.mark.parametrize("literal", [True, False])
async def test_a_private_destination_is_refused_when_sending_and_the_delivery_fails(
    literal: bool, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked on the literal address, and on every resolved one before connecting (a name):
    the delivery fails at once, saying how to allow it, and nothing reaches the receiver."""
    monkeypatch.delenv("ORCHESTRATOR_WEBHOOK_ALLOW")
    url = receiver.base_url if literal else receiver.base_url.replace("127.0.0.1", "localhost")
    store = MemoryStore()
    with DAG("ssrf") as dag:
        Job("j", "fake", webhooks=[hook("h", url + "/x", "onJobDone")])
    await run(dag, store, webhook_wait=5)
    ((delivery, attempts),) = await store.list_deliveries()
    assert delivery.state == "failed"
    assert len(attempts) == 1  # not retried: the sender's policy refuses it every time
    assert "not a public address (allow it with ORCHESTRATOR_WEBHOOK_ALLOW)" in (
        attempts[0].error or ""
    )
    assert receiver.received == []


def test_bad_definitions_are_validation_errors() -> None:
    from orchestrator.errors import DagValidationError

    with DAG("bad") as dag:
        Job(
            "j",
            "fake",
            webhooks=[
                {"name": "a", "url": "ftp://x/y", "triggerEvent": "onJobDone"},
                {"name": "b", "url": "https://example.com/", "triggerEvent": "onJobMaybe"},
                {
                    "name": "c",
                    "url": "https://example.com/",
                    "triggerEvent": "onJobDone",
                    "method": "fetch",
                },
                {
                    "name": "d",
                    "url": "https://example.com/",
                    "triggerEvent": "onJobDone",
                    "method": "get",
                    "body": {},
                },
            ],
        )
    with pytest.raises(DagValidationError) as info:
        dag.validate()
    text = str(info.value)
    assert "webhook 'a': field 'url': 'ftp://x/y' is not an http or https URL" in text
    assert "webhook 'b': field 'triggerEvent'" in text
    assert "webhook 'c': field 'method'" in text
    assert "webhook 'd': field 'body'" in text


class SlowScans(MemoryStore):
    """After the scan that starts a delivery, the next scan takes its snapshot while the
    delivery is in flight and answers only once its attempt is recorded: the order a store
    that reads in another thread can produce."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded = anyio.Event()
        self.stale_snapshot = anyio.Event()
        self.started = False
        self.stale_answers = 0

    async def due_deliveries(self, now: float, limit: int = 100) -> list[Any]:
        snapshot = await super().due_deliveries(now, limit)
        if snapshot and not self.started:
            self.started = True  # this scan starts the delivery
        elif snapshot and not self.recorded.is_set():
            self.stale_snapshot.set()
            await self.recorded.wait()
            self.stale_answers += 1
        return snapshot

    async def record_delivery(self, attempt: Any, *, state: str, next_at: float | None) -> None:
        # the race, made to happen: the attempt is recorded only once a later scan has read
        # the outbox (the run's drain asks for a scan every 50 ms)
        with anyio.move_on_after(10):
            await self.stale_snapshot.wait()
        await super().record_delivery(attempt, state=state, next_at=next_at)
        self.recorded.set()


async def test_a_delivery_is_not_sent_again_from_a_scan_older_than_its_record(
    receiver: Receiver,
) -> None:
    store = SlowScans()
    with DAG("once") as dag:
        Job("j", "fake", webhooks=[hook("h", f"{receiver.base_url}/once", "onJobDone")])
    await run(dag, store)
    assert store.stale_answers >= 1  # the race did happen
    assert len(receiver.on("/once")) == 1
