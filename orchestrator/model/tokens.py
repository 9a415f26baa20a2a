"""``$tokens`` in job fields: ``$runId``, ``$dagName``, ``$jobId``, ``$attempt``, each run parameter
by its name. ``$$`` is a literal ``$``; ``${NAME}`` (environment interpolation, used in
connections) and unknown tokens are left as they are.

A job type says how its fields are substituted (``JobType.substitute``): :func:`substitute` by
default; a field run by a shell uses :func:`substitute_shell`, which keeps each value data.

References to upstream outputs (``{{ job.path }}``, :mod:`.refs`) are substituted in the same
pass, their values resolved beforehand into the tokens under ``refs.KEY + text``: a value put
in is never read again for tokens or references."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from . import refs

Substituter = Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]]
"""How a job type's fields get their tokens: ``(fields, tokens) -> fields``."""

SHELL_ENV_PREFIX = "ORCHESTRATOR_TOKEN_"

_TOKEN = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*)")  # $name, or $$ for a literal $
# a token, or a reference: one pass, so that what one puts in is never read again
_FIELD = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*)|\{\{(.*?)\}\}", re.DOTALL)
REF_ENV_PREFIX = "ORCHESTRATOR_REF_"


def has_tokens(value: Any) -> bool:
    """Whether a string in ``value`` (nested dicts and lists) holds a token."""
    if isinstance(value, str):
        return ("$" in value and _TOKEN.search(value) is not None) or "{{" in value
    if isinstance(value, dict):
        return any(has_tokens(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_tokens(v) for v in value)
    return False


def substitute(value: Any, tokens: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if "$" not in value and "{{" not in value:
            return value
        whole = refs.PATTERN.fullmatch(value)
        if whole is not None and (key := refs.KEY + whole.group(1).strip()) in tokens:
            return tokens[key]  # the field is the reference: its value as it is (JSON)

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name is None:
                return _reference_text(m, tokens)
            if name == "$":
                return "$"
            if name in tokens:
                return str(tokens[name])
            return m.group(0)

        return _FIELD.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute(v, tokens) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, tokens) for v in value]
    return value


def substitute_shell(
    script: str, tokens: Mapping[str, Any], prefix: str = SHELL_ENV_PREFIX
) -> tuple[str, dict[str, str]]:
    """Substitute the tokens of a ``/bin/sh -c`` script as data, never as shell code: each
    token becomes a quoted reference to an environment variable (``"${PREFIX<name>}"``) that
    holds its value, returned alongside. The quoting follows the token's place in the script:
    bare, inside double quotes, or inside single quotes (closed and reopened around it). A
    ``$`` the script escapes for the shell (``\\$name``) is the shell's; ``$$`` is a ``$``."""
    if "$" not in script and "{{" not in script:
        return script, {}
    out: list[str] = []
    env: dict[str, str] = {}
    quote = ""  # "", "'" or '"'
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c == "\\" and quote != "'":
            out.append(script[i : i + 2])
            i += 2
            continue
        if c == "'" and quote != '"':
            quote = "" if quote else "'"
        elif c == '"' and quote != "'":
            quote = "" if quote else '"'
        elif c == "{" and (m := refs.PATTERN.match(script, i)) is not None:
            key = refs.KEY + m.group(1).strip()
            if key in tokens:
                var = f"{REF_ENV_PREFIX}{len(env)}"
                env[var] = refs.as_text(tokens[key])
                ref = "${" + var + "}"
                out.append(ref if quote == '"' else f"'\"{ref}\"'" if quote else f'"{ref}"')
            else:  # a literal ({{ "text" }}: the script's own text), or not resolved
                out.append(_reference_text(m, tokens))
            i = m.end()
            continue
        elif c == "$" and (m := _TOKEN.match(script, i)) is not None:
            name = m.group(1)
            if name == "$":
                out.append("$")
            elif name in tokens:
                var = prefix + name
                env[var] = str(tokens[name])
                ref = "${" + var + "}"
                out.append(ref if quote == '"' else f"'\"{ref}\"'" if quote else f'"{ref}"')
            else:
                out.append(m.group(0))
            i = m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out), env


def _reference_text(m: re.Match[str], tokens: Mapping[str, Any]) -> str:
    """What ``{{ ... }}`` becomes inside a longer string: a resolved reference's value as text,
    a literal's text; anything else stays as written."""
    inner = m.group(m.lastindex or 0)
    key = refs.KEY + inner.strip()
    if key in tokens:
        return refs.as_text(tokens[key])
    try:
        parsed = refs.parse(inner)
    except refs.RefError:
        return m.group(0)
    return parsed.value if isinstance(parsed, refs.Literal) else m.group(0)
