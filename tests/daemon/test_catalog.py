"""The DAG folder: every file loaded, broken ones reported and skipped, the last good version
kept, duplicate names refused, and reloads (by hand and by watching) that see new content."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

from orchestrator.daemon.catalog import DagCatalog
from orchestrator.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def json_dag(name: str, text: str = "hello") -> str:
    return json.dumps(
        {"name": name, "jobs": {"say": {"type": "command", "command": ["echo", text]}}}
    )


def py_dag(name: str, text: str = "hello") -> str:
    return (
        "from orchestrator import DAG, Job\n\n"
        f"with DAG({name!r}) as dag:\n"
        f"    Job('say', 'command', command=['echo', {text!r}])\n"
    )


def write(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "dags"


def test_loads_every_dag_file_recursively_and_skips_the_rest(folder: Path) -> None:
    write(folder, "a.json", json_dag("a"))
    write(folder, "b.py", py_dag("b"))
    write(folder, "team/c.json", json_dag("c"))
    write(folder, ".hidden.json", json_dag("hidden"))
    write(folder, ".git/d.json", json_dag("in_hidden_folder"))
    write(folder, "__pycache__/e.py", py_dag("in_pycache"))
    write(folder, "_helpers.py", "raise RuntimeError('not a DAG file')\n")
    write(folder, "notes.txt", "not a DAG")
    catalog = DagCatalog(folder)

    change = catalog.reload()

    assert sorted(catalog.dags) == ["a", "b", "c"]
    assert change.added == ("a", "b", "c")
    assert catalog.errors == ()
    assert catalog.source_of("c") == folder / "team" / "c.json"


def test_the_repository_examples_load_without_errors() -> None:
    catalog = DagCatalog(REPO / "dags")
    catalog.reload()
    assert catalog.errors == ()
    assert {"quickstart", "quickstart_py"} <= set(catalog.dags)


def test_broken_files_are_reported_and_skipped(folder: Path) -> None:
    write(folder, "good.json", json_dag("good"))
    bad_py = write(folder, "bad.py", "import json\nraise RuntimeError('boom in the DAG file')\n")
    bad_syntax = write(folder, "syntax.py", "with DAG(:\n")
    bad_json = write(folder, "bad.json", '{"name": "x", ')
    invalid = write(folder, "invalid.json", json.dumps({"name": "y", "jobs": {}, "extra": 1}))
    exits = write(folder, "exits.py", "import sys\nsys.exit(3)\n")
    catalog = DagCatalog(folder)

    change = catalog.reload()

    assert list(catalog.dags) == ["good"]
    errors = {e.path: e for e in change.errors}
    assert set(errors) == {bad_py, bad_syntax, bad_json, invalid, exits}
    assert errors == {e.path: e for e in catalog.errors}
    assert "RuntimeError: boom in the DAG file" in errors[bad_py].message
    assert "SyntaxError" in errors[bad_syntax].message
    assert "line 1" in errors[bad_json].message
    assert "unknown field 'extra'" in errors[invalid].message
    assert "SystemExit: 3" in errors[exits].message
    for error in errors.values():
        assert str(error.path) in error.message
        assert "Traceback" not in error.message
        assert error.stale == ()


def test_a_broken_file_keeps_its_last_good_dags_until_fixed(folder: Path) -> None:
    path = write(folder, "flow.py", py_dag("flow", "v1"))
    catalog = DagCatalog(folder)
    catalog.reload()
    first = catalog.dags["flow"]

    path.write_text(py_dag("flow", "v2") + "raise ValueError('half edited')\n")
    change = catalog.reload()

    assert catalog.dags["flow"] is first  # stale, still served
    assert change.added == change.changed == change.removed == ()
    (error,) = catalog.errors
    assert error.path == path
    assert error.stale == ("flow",)
    assert "ValueError: half edited" in error.message

    path.write_text(py_dag("flow", "v2"))
    change = catalog.reload()

    assert change.changed == ("flow",)
    assert change.errors == ()
    assert catalog.errors == ()
    assert catalog.dags["flow"].jobs["say"].params["command"] == ["echo", "v2"]


def test_an_unchanged_reload_changes_nothing(folder: Path) -> None:
    write(folder, "a.json", json_dag("a"))
    write(folder, "b.py", "raise RuntimeError('still broken')\n")
    catalog = DagCatalog(folder)
    catalog.reload()

    change = catalog.reload()

    assert not change
    assert len(change.errors) == 1


def test_a_name_two_files_define_stays_with_the_first(folder: Path) -> None:
    first = write(folder, "a.json", json_dag("shared", "from a"))
    catalog = DagCatalog(folder)
    catalog.reload()
    second = write(folder, "b.py", py_dag("shared", "from b"))
    write(folder, "z.json", json_dag("shared", "from z"))
    # sorted before a.json, but a.json had the name first
    early = write(folder, "0.json", json_dag("shared", "from 0"))

    catalog.reload()

    assert catalog.source_of("shared") == first
    errors = {e.path: e.message for e in catalog.errors}
    assert set(errors) == {second, early, folder / "z.json"}
    assert str(first) in errors[second]
    assert str(second) in errors[second]
    assert "'shared'" in errors[second]

    first.unlink()
    early.unlink()
    (folder / "z.json").unlink()
    change = catalog.reload()

    assert catalog.source_of("shared") == second
    assert change.changed == ("shared",)
    assert catalog.errors == ()


def test_a_removed_file_removes_its_dags(folder: Path) -> None:
    write(folder, "keep.json", json_dag("keep"))
    gone = write(folder, "team/gone.py", py_dag("gone"))
    broken = write(folder, "broken.json", "{")
    catalog = DagCatalog(folder)
    catalog.reload()

    gone.unlink()
    broken.unlink()
    change = catalog.reload()

    assert change.removed == ("gone",)
    assert change.errors == ()
    assert list(catalog.dags) == ["keep"]


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such DAG folder"):
        DagCatalog(tmp_path / "nowhere").reload()


def test_a_python_file_rewritten_at_once_is_loaded_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a .pyc is checked against the source's mtime in whole seconds and its size: with
    # bytecode written, an edit within the same second at the same size must still be seen
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = write(folder, "flow.py", py_dag("flow", "one"))
    catalog = DagCatalog(folder)
    catalog.reload()

    path.write_text(py_dag("flow", "two"))
    change = catalog.reload()

    assert change.changed == ("flow",)
    assert catalog.dags["flow"].jobs["say"].params["command"] == ["echo", "two"]
    assert not (folder / "__pycache__").exists()


async def test_watch_reloads_on_a_file_change_and_stops(folder: Path) -> None:
    path = write(folder, "flow.json", json_dag("flow", "v0"))
    catalog = DagCatalog(folder)
    catalog.reload()
    changed = anyio.Event()
    stop = anyio.Event()
    calls = 0

    async def on_change() -> None:
        nonlocal calls
        calls += 1
        changed.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: catalog.watch(on_change, stop=stop, debounce=0.05))
            version = 0
            # the watcher starts in its own time: edit until it has seen an edit
            while not changed.is_set():
                version += 1
                path.write_text(json_dag("flow", f"v{version}"))
                with anyio.move_on_after(0.5):
                    await changed.wait()
            assert catalog.dags["flow"].jobs["say"].params["command"][1].startswith("v")
            assert catalog.dags["flow"].jobs["say"].params["command"] != ["echo", "v0"]

            # a new broken file: the callback runs again, with the error recorded
            changed = anyio.Event()
            write(folder, "broken.json", "{")
            await changed.wait()
            assert [e.path.name for e in catalog.errors] == ["broken.json"]
            stop.set()  # the watch returns, and so does the task group


async def test_watch_ends_promptly_when_cancelled(folder: Path) -> None:
    write(folder, "flow.json", json_dag("flow"))
    catalog = DagCatalog(folder)

    async def on_change() -> None:
        pass

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(catalog.watch, on_change)
            await anyio.wait_all_tasks_blocked()  # the watcher's thread is waiting for changes
            tg.cancel_scope.cancel()
