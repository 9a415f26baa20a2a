"""The daemon's DAG folder: every DAG it defines, kept current as files change.

``DagCatalog(folder)`` loads every ``*.py`` and ``*.json`` file under the folder (recursively;
hidden names, ``__pycache__`` and files whose name starts with ``_`` are not DAG files), each
with :func:`~orchestrator.model.loader.load_path`. A broken file never stops the others: it is
recorded as a :class:`LoadError`, and the DAGs of its last good version stay in the catalog
(stale, and said so in the error) until the file is fixed or removed. A DAG name that two files
define stays with the file that had it first; the other file's DAG is an error naming both.

:meth:`DagCatalog.reload` reads the folder again and says what changed; :meth:`DagCatalog.watch`
reloads on every change to the folder. A good file whose bytes have not changed is not loaded
again: a Python DAG file runs code, and the catalog runs it only when there is something new to
see. Loading never goes through ``__pycache__`` (the loader compiles the source as it is now).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import anyio
import structlog
import watchfiles

from ..engine.durable import dag_definition
from ..errors import ConfigError, DagError
from ..model.dag import DAG
from ..model.loader import load_path

log = structlog.get_logger("orchestrator")
SUFFIXES = frozenset({".py", ".json"})


@dataclass(frozen=True, slots=True)
class LoadError:
    """A DAG file that could not be (entirely) served. ``stale`` names the DAGs still served
    from the file's last good version."""

    path: Path
    message: str
    stale: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """What one :meth:`DagCatalog.reload` changed: DAG names added, whose definition changed
    (its hash), and removed, and every error the folder has now."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    errors: tuple[LoadError, ...] = ()
    errors_changed: bool = False

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.errors_changed)


@dataclass(slots=True)
class _File:
    """One DAG file as last read: its bytes' digest, the DAGs of its last good version and the
    error of its current version (``None``: the current version is the good one)."""

    digest: str
    dags: dict[str, DAG] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)  # DAG name -> definition hash
    error: str | None = None


def is_dag_file(path: Path, folder: Path) -> bool:
    """Whether ``path`` (under ``folder``) is a file the catalog loads, by its name alone."""
    try:
        parts = path.relative_to(folder).parts
    except ValueError:
        return False
    if not parts or path.suffix not in SUFFIXES or parts[-1].startswith("_"):
        return False
    return not any(part.startswith(".") or part == "__pycache__" for part in parts)


class DagCatalog:
    """Every DAG the files under ``folder`` define; empty until the first :meth:`reload`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._files: dict[Path, _File] = {}
        self._dags: dict[str, DAG] = {}
        self._owners: dict[str, Path] = {}  # DAG name -> the file it is served from
        self._digests: dict[str, str] = {}  # DAG name -> definition hash
        self._errors: tuple[LoadError, ...] = ()
        self._lock = threading.Lock()  # one reload at a time (watch reloads in a worker thread)

    @property
    def dags(self) -> Mapping[str, DAG]:
        """DAG name -> DAG, as of the last reload (stale DAGs of broken files included)."""
        return MappingProxyType(self._dags)

    @property
    def errors(self) -> tuple[LoadError, ...]:
        """The files that failed at the last reload, in path order."""
        return self._errors

    def source_of(self, name: str) -> Path:
        """The file the DAG ``name`` is served from (``KeyError`` if there is no such DAG)."""
        return self._owners[name]

    def reload(self) -> CatalogChange:
        """Read the folder again. Runs the code of changed Python DAG files: blocking, call it
        off the event loop (:meth:`watch` does). :class:`ConfigError` if the folder is gone."""
        with self._lock:
            return self._reload()

    def _reload(self) -> CatalogChange:
        paths = sorted(self._scan())
        self._files = {path: self._read(path) for path in paths}
        owners: dict[str, Path] = {}
        problems: dict[Path, list[str]] = {}
        # a name stays with the file that served it; new names go to files in path order
        for name, path in self._owners.items():
            file = self._files.get(path)
            if file is not None and name in file.dags:
                owners[name] = path
        for path, file in self._files.items():
            for name in file.dags:
                holder = owners.setdefault(name, path)
                if holder != path:
                    problems.setdefault(path, []).append(
                        f"{path}: DAG {name!r} is already defined in {holder}; "
                        "each DAG needs a name of its own"
                    )
        errors = []
        for path, file in self._files.items():
            messages = [file.error] if file.error else []
            messages += problems.get(path, [])
            if messages:
                stale = tuple(n for n in file.dags if owners.get(n) == path) if file.error else ()
                errors.append(LoadError(path, "\n".join(messages), stale))
        dags = {name: self._files[path].dags[name] for name, path in sorted(owners.items())}
        digests = {name: self._files[path].hashes[name] for name, path in owners.items()}
        change = CatalogChange(
            added=tuple(n for n in dags if n not in self._dags),
            changed=tuple(n for n in dags if n in self._digests and self._digests[n] != digests[n]),
            removed=tuple(n for n in sorted(self._dags) if n not in dags),
            errors=tuple(errors),
            errors_changed=tuple(errors) != self._errors,
        )
        self._dags, self._owners, self._digests, self._errors = dags, owners, digests, change.errors
        return change

    def _scan(self) -> Iterator[Path]:
        if not self.folder.is_dir():
            raise ConfigError(f"{self.folder}: no such DAG folder")
        for root, dirs, names in os.walk(self.folder):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            for name in names:
                path = Path(root, name)
                if is_dag_file(path, self.folder) and path.is_file():
                    yield path

    def _read(self, path: Path) -> _File:
        previous = self._files.get(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            message = f"{path}: cannot read: {reason}"
            return _File("", *_last_good(previous), error=message)
        digest = hashlib.sha256(data).hexdigest()
        if previous is not None and previous.digest == digest and previous.error is None:
            return previous  # a broken file is tried again: what it imports may be fixed
        try:
            loaded = load_path(path)
        except DagError as exc:
            message = str(exc)
        except (Exception, SystemExit) as exc:  # a Python DAG file runs any code
            message = f"{path}: {type(exc).__name__}: {exc}"
        else:
            dags = {str(dag.name): dag for dag in loaded}
            return _File(digest, dags, {name: _definition_hash(dag) for name, dag in dags.items()})
        log.warning("DAG file not loaded", path=str(path), error=message)
        return _File(digest, *_last_good(previous), error=message)

    async def watch(
        self,
        on_change: Callable[[], Awaitable[object]],
        *,
        stop: anyio.Event | None = None,
        debounce: float = 0.5,
    ) -> None:
        """Reload after every change to the folder's DAG files (changes within ``debounce``
        seconds are one), then ``await on_change()`` if the reload changed anything (a DAG, or
        the errors). Runs until ``stop`` is set or the task is cancelled; an exception from
        ``on_change`` ends it. Reloads run in a worker thread; the first load is the caller's
        (:meth:`reload`): changes made before the watcher starts are not seen."""
        halt = anyio.Event()  # the watcher's thread checks it: cancelling cannot reach a thread

        async def relay() -> None:
            try:
                if stop is None:
                    await anyio.sleep_forever()
                else:
                    await stop.wait()
            finally:
                halt.set()

        folder = self.folder.resolve()

        def wanted(change: watchfiles.Change, path: str) -> bool:
            p = Path(path)
            if change == watchfiles.Change.deleted and p.suffix not in SUFFIXES:
                p = p / "x.json"  # a deleted folder may have held DAG files
            return is_dag_file(p, folder)

        async with anyio.create_task_group() as tg:
            tg.start_soon(relay)
            changes = watchfiles.awatch(
                folder,
                watch_filter=wanted,
                debounce=int(debounce * 1000),
                stop_event=halt,
                rust_timeout=1000,
            )
            async with aclosing(changes):
                async for _ in changes:
                    try:
                        change = await anyio.to_thread.run_sync(self.reload)
                    except ConfigError as exc:
                        log.warning("DAG folder not read", error=str(exc))
                        continue
                    if change:
                        await on_change()
            tg.cancel_scope.cancel()


def _definition_hash(dag: DAG) -> str:
    return dag_definition(dag)[1]


def _last_good(file: _File | None) -> tuple[dict[str, DAG], dict[str, str]]:
    return (file.dags, file.hashes) if file is not None else ({}, {})
