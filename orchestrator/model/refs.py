"""References to upstream outputs in job fields: ``{{ wrangle.files[0] }}``.

A reference names a root and a path into it:

- a job's id: that job's outputs (it must be upstream of the job whose field holds it);
  ``jobs["a job.with dots"]`` for an id that is not made of letters, digits, ``_`` and ``-``;
- ``params``: the run's parameters, as JSON values;
- ``item``: in a job that maps over a list (``map``), the item of its instance.

then ``.name``, ``[0]`` or ``["any key"]`` steps. ``{{ "text" }}`` is the text itself: how a
field writes a literal ``{{``.

A field that is a reference and nothing else takes the value as it is (a list stays a list); a
reference inside a longer string puts its text there (a string as it is, anything else as
JSON). Values are data: they are never read again for ``$tokens`` or references, and a shell
``command`` receives them through environment variables (:func:`~.tokens.substitute_shell`).

The references of a DAG are checked when it loads (:func:`problems`); they are resolved when a
job is submitted (:func:`resolve`), and one that does not resolve fails that job, naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

PATTERN = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
ROOTS = ("params", "item")  # a job by these ids is reached as jobs["params"], jobs["item"]
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_STEP = re.compile(r"""\s*(?:\.([A-Za-z0-9_-]+)|\[\s*(-?\d+|"(?:[^"\\]|\\.)*"|'[^']*')\s*\])""")
_STRING = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*')\s*""")

Step = str | int
DEFAULT_MAP_LIMIT = 1000  # instances of one mapped job, unless its ``mapLimit`` says otherwise


class Ref(NamedTuple):
    """One reference: its root (``job``, ``params`` or ``item``), the job's id for a job, and
    the steps of its path."""

    root: str
    job: str | None
    path: tuple[Step, ...]
    text: str  # as written between the braces, stripped

    def __str__(self) -> str:
        return "{{ " + self.text + " }}"


class Literal(NamedTuple):
    """``{{ "text" }}``: the text, written where a ``{{`` would read as a reference."""

    value: str


class RefError(ValueError):
    """A reference that does not parse, or does not resolve."""


def parse(inner: str) -> Ref | Literal:
    """The reference between ``{{`` and ``}}``; :class:`RefError` saying what is wrong."""
    text = inner.strip()
    if (m := _STRING.fullmatch(inner)) is not None:
        return Literal(_string(m.group(1)))
    if text.startswith("jobs["):
        m = _STEP.match(text, 4)
        if m is None or m.group(2) is None or m.group(2)[0] not in "\"'":
            raise RefError(f'expected jobs["job id"], got {text!r}')
        root, pos = "job", m.end()
        job: str | None = _string(m.group(2))
    else:
        m = _NAME.match(text)
        if m is None:
            raise RefError(
                f"expected a job id, 'params' or 'item' after '{{{{', got {text!r} "
                '(a literal "{{" is written {{ "{{" }})'
            )
        name, pos = m.group(0), m.end()
        root, job = (name, None) if name in ROOTS else ("job", name)
    path: list[Step] = []
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            raise RefError(
                f'cannot read {text[pos:]!r} in {text!r}: expected .name, [0] or ["key"]'
            )
        name, index = m.group(1), m.group(2)
        if name is not None:
            path.append(name)
        elif index[0] in "\"'":
            path.append(_string(index))
        else:
            path.append(int(index))
        pos = m.end()
    return Ref(root, job, tuple(path), text)


def _string(quoted: str) -> str:
    if quoted[0] == "'":
        return quoted[1:-1]
    try:
        value = json.loads(quoted)
    except ValueError as exc:
        raise RefError(f"bad string {quoted}: {exc}") from None
    assert isinstance(value, str)
    return value


def walk(value: Any, field: str = "") -> Iterator[tuple[str, str]]:
    """Every string of ``value`` (nested dicts and lists) holding ``{{``, with its field path
    (``parameters[0].value``)."""
    if isinstance(value, str):
        if "{{" in value:
            yield field, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from walk(item, f"{field}[{i}]")


def has_braces(value: Any) -> bool:
    """Whether a string of ``value`` holds ``{{`` (a reference, most likely)."""
    return next(walk(value), None) is not None


def references(params: Mapping[str, Any]) -> dict[str, Ref]:
    """The references of a job's fields, by the text between their braces (``RefError`` for
    the first one that does not parse)."""
    found: dict[str, Ref] = {}
    for _, text in walk(params):
        for m in PATTERN.finditer(text):
            parsed = parse(m.group(1))
            if isinstance(parsed, Ref):
                found[m.group(1).strip()] = parsed
    return found


def problems(
    params: Mapping[str, Any],
    jobs: Mapping[str, Any],
    ancestors: Callable[[], set[str]],
    *,
    mapped: bool,
) -> list[str]:
    """What is wrong with the references of one job's fields: a malformed one, an unknown job,
    a job that is not upstream of it, ``item`` outside a mapped job. Each names its field."""
    out: list[str] = []
    upstream: set[str] | None = None
    for field, text in walk(params):
        for m in PATTERN.finditer(text):
            try:
                ref = parse(m.group(1))
            except RefError as exc:
                out.append(f"field {field!r}: malformed reference {m.group(0)!r}: {exc}")
                continue
            if isinstance(ref, Literal):
                continue
            if ref.root == "item" and not mapped:
                out.append(
                    f"field {field!r}: reference {str(ref)!r}: 'item' is only known in a job "
                    "that maps over a list ('map')"
                )
            if ref.job is None:
                continue
            if ref.job not in jobs:
                out.append(f"field {field!r}: reference {str(ref)!r}: unknown job {ref.job!r}")
                continue
            if upstream is None:
                upstream = ancestors()
            if ref.job not in upstream:
                out.append(
                    f"field {field!r}: reference {str(ref)!r}: job {ref.job!r} is not upstream "
                    "of this job (its outputs are only known once it has ended: add an edge)"
                )
    return out


def resolve(
    ref: Ref, outputs: Callable[[str], Mapping[str, Any] | None], scope: Mapping[str, Any]
) -> Any:
    """The value ``ref`` names: ``outputs(job)`` gives a job's outputs (None: it has none, it
    did not run), ``scope`` holds ``params`` and ``item``. :class:`RefError` naming the step
    that does not resolve."""
    if ref.job is not None:
        value: Any = outputs(ref.job)
        if value is None:
            raise RefError(
                f"reference {str(ref)!r}: job {ref.job!r} has no outputs (it did not succeed)"
            )
        walked = ref.job
    else:
        if ref.root not in scope:
            raise RefError(f"reference {str(ref)!r}: no {ref.root!r} here")
        value = scope[ref.root]
        walked = ref.root
    for step in ref.path:
        if isinstance(step, int):
            if not isinstance(value, list):
                raise RefError(f"reference {str(ref)!r}: {walked} is not a list")
            if not -len(value) <= step < len(value):
                raise RefError(
                    f"reference {str(ref)!r}: {walked} has {len(value)} items, no [{step}]"
                )
            value = value[step]
            walked = f"{walked}[{step}]"
        else:
            if not isinstance(value, dict):
                raise RefError(f"reference {str(ref)!r}: {walked} is not an object")
            if step not in value:
                known = ", ".join(sorted(map(str, value))[:10]) or "none"
                raise RefError(
                    f"reference {str(ref)!r}: {walked} has no {step!r} (it has: {known})"
                )
            value = value[step]
            walked = f"{walked}.{step}"
    return value


def as_text(value: Any) -> str:
    """A value put inside a longer string: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


KEY = "{{"
"""Resolved references travel in a job's tokens under ``KEY + text`` (never a token's name)."""


class Output:
    """A reference built in Python: ``wrangle.outputs["files"][0]`` (or ``.files[0]``), put in
    a field as it is or inside an f-string. In a job's field it also makes that job depend on
    ``wrangle``, as Airflow's ``XComArg`` does."""

    __slots__ = ("_path", "_root", "_source")

    def __init__(self, root: str, path: tuple[Step, ...] = (), source: Any = None) -> None:
        self._root = root  # a job's id, "params" or "item"
        self._path = path
        self._source = source  # the Job whose outputs these are

    def __getitem__(self, step: Step) -> Output:
        if not isinstance(step, str | int) or isinstance(step, bool):
            raise TypeError(f"a reference's step is a key or an index, got {step!r}")
        return Output(self._root, (*self._path, step), self._source)

    def __getattr__(self, name: str) -> Output:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    @property
    def text(self) -> str:
        root = self._root
        if self._source is not None and (root in ROOTS or not _NAME.fullmatch(root)):
            root = f"jobs[{json.dumps(root)}]"
        steps = [
            f"[{s}]"
            if isinstance(s, int)
            else f".{s}"
            if _NAME.fullmatch(s)
            else f"[{json.dumps(s)}]"
            for s in self._path
        ]
        return root + "".join(steps)

    def __str__(self) -> str:
        return "{{ " + self.text + " }}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return f"Output({str(self)!r})"


def outputs_in(value: Any) -> tuple[Any, list[Any]]:
    """``value`` with each :class:`Output` in it written as its reference, and the jobs they
    name (the :class:`Output`'s sources)."""
    sources: list[Any] = []

    def text(v: Any) -> Any:
        if isinstance(v, Output):
            if v._source is not None:
                sources.append(v._source)
            return str(v)
        if isinstance(v, dict):
            return {k: text(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [text(x) for x in v]
        return v

    return text(value), sources


item = Output("item")
"""In a job that maps over a list: the item of its instance (``orchestrator.item``)."""
