"""Pushed completion in the run host: a callback token is bound to one attempt, wakes only that
attempt while it is followed (its poll decides), and a forged token, another attempt's, or one
replayed after its attempt ended changes nothing. The keys and the tokens' masking too."""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from pathlib import Path

import anyio
import pytest

from orchestrator import DAG, Job, logs
from orchestrator.connectors.fake import JOB_TYPES as FAKE_TYPES
from orchestrator.connectors.fake import FakeConnector, FakeRemote
from orchestrator.connectors.registry import job_types
from orchestrator.engine.records import Run
from orchestrator.errors import ConfigError
from orchestrator.model.states import JobState, RunState
from orchestrator.runtime.callbacks import PATH, Callbacks, load_key
from orchestrator.runtime.host import RunHost

KEY = bytes(range(32))
PUSHED = dataclasses.replace(FAKE_TYPES[0], name="pushed", callbacks=True)


def pushed_dag() -> DAG:
    with DAG("pushed") as dag:
        Job("a", "pushed", duration="0.3s")  # ends by itself, seen only when pushed
        Job("b", "pushed", hang=True)  # never ends: keeps the run going
    return dag


async def until(condition: object, seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():  # type: ignore[operator]
            await anyio.sleep(0.01)


async def test_a_callback_wakes_its_attempt_and_nothing_else_does() -> None:
    remote = FakeRemote()
    callbacks = Callbacks("http://daemon.example:8080/", KEY)
    types = {**job_types(), "pushed": PUSHED}
    run = Run("r1", pushed_dag(), {})
    async with (
        RunHost(
            None, connectors={"pushed": FakeConnector(remote)}, job_types=types, callbacks=callbacks
        ) as host,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(host.run, run)
        await until(lambda: remote.polls == 2)  # each polled once, at once
        a, b = run.jobs["a"], run.jobs["b"]
        token_a, token_b = callbacks.token("r1", "a", 1), callbacks.token("r1", "b", 1)
        assert callbacks.find(token_a) == ("r1", "a", 1)
        await anyio.sleep(0.6)  # a ended at the remote; without a push it waits for the fallback
        assert (remote.polls, a.state) == (2, JobState.RUNNING)

        forged = "orcb_" + "A" * 43
        other = callbacks.token("r1", "a", 2)  # a's next attempt: not the one followed
        elsewhere = Callbacks("http://daemon.example:8080", bytes(32)).token("r1", "a", 1)
        for refused in (forged, other, elsewhere, token_a[:-1], ""):
            assert host.callback(refused) is None
        await anyio.sleep(0.1)
        assert (remote.polls, a.state) == (2, JobState.RUNNING)  # nothing changed

        started = time.monotonic()
        assert host.callback(token_a) == ("r1", "a", 1)
        await until(lambda: a.state is JobState.SUCCEEDED)
        assert time.monotonic() - started < 2
        assert remote.polls == 3  # one confirming poll
        assert host.callback(token_a) is None  # replayed after its attempt ended
        await anyio.sleep(0.1)
        assert remote.polls == 3

        assert host.callback(token_b) == ("r1", "b", 1)  # b is still followed: polled again
        await until(lambda: remote.polls == 4)
        assert b.state is JobState.RUNNING  # the poll decides: it still runs
        host.cancel("r1")
    assert run.state is RunState.CANCELLED
    assert callbacks.find(token_b) is None  # forgotten with its run
    assert host.callback(token_b) is None


def test_tokens_are_bound_to_the_attempt_and_the_key() -> None:
    one = Callbacks("https://o.example/base/", KEY)
    again = Callbacks("https://o.example/base", KEY)
    token = one.token("r1", "job", 1)
    assert token.startswith("orcb_")
    assert len(token) == 48
    assert again.token("r1", "job", 1) == token  # the same after a restart (same key)
    assert len({token, one.token("r1", "job", 2), one.token("r2", "job", 1)}) == 3
    assert Callbacks("https://o.example", bytes(32)).token("r1", "job", 1) != token
    assert one.url("r1", "job", 1) == f"https://o.example/base{PATH}{token}"
    assert one.find(token) == ("r1", "job", 1)
    assert again.find(token) is None  # a host knows the tokens of its own attempts only


def test_tokens_are_masked_in_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_SHAPES", set())
    monkeypatch.setattr(logs, "_PATTERN", None)
    url = Callbacks("http://127.0.0.1:1", KEY).url("r1", "a", 1)
    text = f'the remote answered: {{"url": "{url}"}}'
    assert (
        logs.redact_text(text)
        == 'the remote answered: {"url": "http://127.0.0.1:1/api/v1/callbacks/***"}'
    )


def test_the_key_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "home" / "callback.key"
    key = load_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(path) == key
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="not a callback key"):
        load_key(path)
