"""``$tokens`` in job fields: ``$runId``, ``$dagName``, ``$jobId``, ``$attempt``, each run parameter
by its name. ``$$`` is a literal ``$``; ``${NAME}`` (environment interpolation, used in
connections) and unknown tokens are left as they are.

A job type says how its fields are substituted (``JobType.substitute``): :func:`substitute` by
default; a field run by a shell uses :func:`substitute_shell`, which keeps each value data."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Substituter = Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]]
"""How a job type's fields get their tokens: ``(fields, tokens) -> fields``."""

SHELL_ENV_PREFIX = "ORCHESTRATOR_TOKEN_"

_TOKEN = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*)")  # $name, or $$ for a literal $


def has_tokens(value: Any) -> bool:
    """Whether a string in ``value`` (nested dicts and lists) holds a token."""
    if isinstance(value, str):
        return "$" in value and _TOKEN.search(value) is not None
    if isinstance(value, dict):
        return any(has_tokens(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_tokens(v) for v in value)
    return False


def substitute(value: Any, tokens: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if "$" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name == "$":
                return "$"
            if name in tokens:
                return str(tokens[name])
            return m.group(0)

        return _TOKEN.sub(repl, value)
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
    if "$" not in script:
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
