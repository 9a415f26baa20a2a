"""Named connections: where and how to reach one remote API.

Loaded from a TOML file (``--connections FILE`` or ``$ORCHESTRATOR_CONNECTIONS``), one table per
connection. Secrets come from ``${ENV_VAR}`` interpolation and never appear in ``repr``::

    [trifacta]
    type = "trifacta"
    base_url = "https://trifacta.example/"
    token = "${TRIFACTA_TOKEN}"
    rate = 5          # requests per second
    burst = 10
    timeout = "30s"

    [celonis.credentials]      # any credential names, all kept out of repr and logs
    app_key = "${CELONIS_KEY}"

Every string value may hold ``${NAME}`` (read from the environment) or ``${NAME:-default}``
(the default when NAME is unset or empty, as in a shell); ``$${`` is a literal ``${``. Every
problem in the file is reported at once, each naming the file, the connection and the field,
never a secret.
"""

from __future__ import annotations

import base64
import difflib
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .model.durations import parse_duration
from .printable import name_problem

__all__ = ["ENV_VAR", "Connection", "connection_secrets", "load_connections"]

ENV_VAR = "ORCHESTRATOR_CONNECTIONS"
"""The environment variable naming the connections file when no path is given."""


@dataclass(frozen=True, slots=True)
class Connection:
    name: str
    type: str
    base_url: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = 30.0  # deadline of one HTTP request, seconds
    connect_timeout: float = 10.0
    rate: float | None = None  # requests per second, submits and polls alike
    burst: int = 1
    concurrency: int | None = None  # jobs running at once on this connection
    max_connections: int = 32  # bounded pool of the connection's HTTP session
    options: Mapping[str, Any] = field(default_factory=dict)  # type-specific settings
    # ${ENV} values in base_url's path (``${BASE}/t/${TOKEN}/api``): secrets, masked like
    # credentials
    url_secrets: frozenset[str] = field(default=frozenset(), repr=False)

    def __repr__(self) -> str:
        secrets = ", ".join(f"{k}=***" for k in sorted(self.credentials))
        base_url = self.base_url
        for secret in sorted(self.url_secrets, key=len, reverse=True):
            base_url = base_url.replace(secret, "***")
        return (
            f"Connection(name={self.name!r}, type={self.type!r}, "
            f"base_url={base_url!r}, credentials=[{secrets}])"
        )


# -- loading --------------------------------------------------------------------------------

_CREDENTIAL_KEYS = frozenset(
    {"token", "username", "password", "client_id", "client_secret", "app_key", "api_key"}
)
_KNOWN = frozenset(
    {
        "type",
        "base_url",
        "credentials",
        "verify_tls",
        "ca_file",
        "timeout",
        "connect_timeout",
        "rate",
        "burst",
        "concurrency",
        "max_connections",
    }
)
_OPTIONS: Mapping[str, Mapping[str, str]] = {
    # connection type -> its options -> their kind (see _Reader.option); a connector that reads
    # a new option from ``Connection.options`` declares it here
    "http": {"headers": "headers"},
    "ocapi": {
        "token_url": "string",
        "api_version": "string",
        "clock_skew": "seconds",
        "find_skew": "seconds",  # the name clock_skew had
    },
    "trifacta": {"key_field": "string", "clock_skew": "seconds"},
    "granta": {
        "application_name": "string",
        "max_upload_bytes": "count",
        "max_download_bytes": "count",
    },
    "celonis": {"appear_grace": "seconds", "clock_skew": "seconds"},
    "alation": {},
}
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def load_connections(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, Connection]:
    """Read the connections file: ``path``, else ``$ORCHESTRATOR_CONNECTIONS``, else none.

    Returns the connections by name (an empty dict when no file is named). Raises
    :class:`~orchestrator.errors.ConfigError` listing every problem found.
    """
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(ENV_VAR) or None
        if path is None:
            return {}
    import tomllib  # only where a connections file is named

    file = Path(path).expanduser()
    try:
        with file.open("rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"connections file {file}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"connections file {file}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"connections file {file}: not valid TOML: not UTF-8") from None

    problems: list[str] = []
    connections: dict[str, Connection] = {}
    for name, table in document.items():
        reader = _Reader(file, name, env, problems)
        if (problem := name_problem("connection name", name)) is not None:
            problems.append(f"{file}: connection {name!r}: {problem}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{file}: connection {name!r}: must be a table ([{name}])")
            continue
        conn = reader.connection(table)
        if conn is not None:
            connections[name] = conn
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise ConfigError(f"connections file {file}: {count}:\n" + "\n".join(problems))
    return connections


def connection_secrets(conns: Mapping[str, Connection] | Iterable[Connection]) -> set[str]:
    """Every secret of ``conns``, for masking: credential values (and the Basic pair they
    make), ``${ENV}`` values in a base URL's path, and credential-bearing header values (the
    whole value and the part after an auth scheme such as ``Bearer``)."""
    from .logs import is_credential_header

    secrets: set[str] = set()
    for conn in conns.values() if isinstance(conns, Mapping) else conns:
        creds = conn.credentials
        secrets.update(v for v in creds.values() if v)
        if creds.get("username"):
            pair = f"{creds['username']}:{creds.get('password', '')}".encode()
            secrets.add(base64.b64encode(pair).decode())
        secrets.update(conn.url_secrets)
        headers = conn.options.get("headers")
        for name, value in (headers or {}).items() if isinstance(headers, Mapping) else ():
            if isinstance(value, str) and is_credential_header(str(name)):
                secrets.add(value.strip())
                scheme, _, rest = value.strip().partition(" ")
                if rest.strip() and scheme.isalpha():
                    secrets.add(rest.strip())
    return secrets


class _Reader:
    """Checks one connection's table, appending problems instead of raising."""

    def __init__(self, file: Path, name: str, env: Mapping[str, str], problems: list[str]):
        self.file = file
        self.name = name
        self.env = env
        self.problems = problems
        self.failed = False
        self.from_env: set[str] = set()

    def problem(self, key: str, message: str) -> None:
        self.failed = True
        self.problems.append(f"{self.file}: connection {self.name!r}: field {key!r}: {message}")

    # -- values --

    def interpolate(self, key: str, value: Any) -> Any:
        """``${NAME}`` and ``${NAME:-default}`` replaced in every string, recursively; ``$${`` is
        a literal ``${``."""
        if isinstance(value, str):
            return self._substitute(key, value)
        if isinstance(value, dict):
            return {k: self.interpolate(f"{key}.{k}", v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.interpolate(f"{key}[{i}]", v) for i, v in enumerate(value)]
        return value

    def _substitute(self, key: str, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            ref = match.group(1)
            name = ref.partition(":-")[0]
            if not match.group(0).endswith("}"):
                self.problem(key, "unclosed '${' (write '$${' for a literal '${')")
            elif not _NAME.match(name):
                self.problem(key, f"'${{{ref}}}' is not a valid environment variable name")
            elif (found := self.lookup(ref)) is None:
                self.problem(key, f"environment variable {name} is not set")
            else:
                return found[0]
            return ""

        return _REFERENCE.sub(replace, text) if "$" in text else text

    def lookup(self, ref: str) -> tuple[str, bool] | None:
        """The value of ``NAME`` or ``NAME:-default`` (the default when NAME is unset or
        empty, as in a shell) and whether it came from the environment; ``None`` when NAME is
        unset and has no default."""
        name, has_default, default = ref.partition(":-")
        value = self.env.get(name)
        if has_default and not value:
            return default, False
        return (value, True) if value is not None else None

    def string(self, key: str, value: Any) -> str | None:
        if not isinstance(value, str):
            self.problem(key, f"must be a string, not {_kind(value)}")
            return None
        return value

    def boolean(self, key: str, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        if key in self.from_env and value.strip().lower() in _TRUE | _FALSE:
            return bool(value.strip().lower() in _TRUE)
        self.problem(key, f"must be true or false{self._unquoted(key, value)}")
        return None

    def _unquoted(self, key: str, value: Any) -> str:
        """A hint for a typed value written as a TOML string (only ``${ENV}`` may be one)."""
        if isinstance(value, str) and key not in self.from_env:
            return f", not a string (write {key} = {value.strip()} without quotes)"
        return ""

    def duration(self, key: str, value: Any) -> float | None:
        try:
            return parse_duration(value)
        except ValueError:
            self.problem(key, "must be a positive number of seconds or a duration such as '30s'")
            return None

    def number(self, key: str, value: Any) -> float | None:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and key in self.from_env:
            try:
                number = float(value)
            except ValueError:
                number = None
        if number is None or not math.isfinite(number) or number <= 0:
            self.problem(key, f"must be a positive number{self._unquoted(key, value)}")
            return None
        return number

    def count(self, key: str, value: Any) -> int | None:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and key in self.from_env and value.strip().isdigit():
            number = int(value)
        if number is None or number < 1:
            self.problem(key, f"must be a whole number of at least 1{self._unquoted(key, value)}")
            return None
        return number

    def seconds(self, key: str, value: Any) -> float | None:
        """Zero or a duration (``appear_grace = 0``, ``find_skew = "30s"``)."""
        if value == 0 and not isinstance(value, bool):
            return 0.0
        return self.duration(key, value)

    def headers(self, key: str, value: Any) -> dict[str, str] | None:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self.problem(key, f"must be a table of header names to strings ([{self.name}.{key}])")
            return None
        return dict(value)

    def option(self, type_: str, key: str, value: Any) -> Any:
        """A type-specific option checked by the kind :data:`_OPTIONS` gives it."""
        kind = _OPTIONS[type_][key]
        check = {
            "string": self.string,
            "count": self.count,
            "seconds": self.seconds,
            "headers": self.headers,
        }[kind]
        return check(key, value)

    def unknown(self, type_: str | None, key: str) -> None:
        known = sorted(_KNOWN | _CREDENTIAL_KEYS | set(_OPTIONS.get(type_ or "", {})))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        what = f" of type {type_!r}" if type_ in _OPTIONS else ""
        self.problem(key, f"unknown key for a connection{what}{hint}")

    # -- the table --

    def connection(self, raw: dict[str, Any]) -> Connection | None:
        # only a value from ${ENV} may be a string standing for a boolean or a number
        self.from_env = {
            k for k, v in raw.items() if isinstance(v, str) and "${" in v.replace("$${", "")
        }
        table: dict[str, Any] = self.interpolate_table(raw)
        type_ = self.string("type", table["type"]) if "type" in table else None
        if "type" not in table:
            self.problem("type", "required (the kind of remote API)")
        elif type_ is not None and not type_.strip():
            self.problem("type", "must not be empty")
        elif type_ is not None and type_.strip() not in _OPTIONS:
            known = ", ".join(sorted(_OPTIONS))
            self.problem("type", f"unknown connection type {type_.strip()!r} (known: {known})")
        base_url = self.base_url(table.get("base_url"))
        credentials = self.credentials(table)
        kwargs: dict[str, Any] = {}
        if "verify_tls" in table:
            kwargs["verify_tls"] = self.boolean("verify_tls", table["verify_tls"])
        if "ca_file" in table:
            kwargs["ca_file"] = self.ca_file(table["ca_file"])
        for key in ("timeout", "connect_timeout"):
            if key in table:
                kwargs[key] = self.duration(key, table[key])
        if "rate" in table:
            kwargs["rate"] = self.number("rate", table["rate"])
        for key in ("burst", "concurrency", "max_connections"):
            if key in table:
                kwargs[key] = self.count(key, table[key])
        if kwargs.get("verify_tls") is False and kwargs.get("ca_file"):
            self.problem("ca_file", "is set but verify_tls is false; drop one of them")
        kind = type_.strip() if type_ is not None else None
        options: dict[str, Any] = {}
        for key in table:
            if key in _KNOWN or key in _CREDENTIAL_KEYS:
                continue
            if kind is not None and key in _OPTIONS.get(kind, {}):
                options[key] = self.option(kind, key, table[key])
            elif kind in _OPTIONS or kind is None:  # an unknown type is reported already
                self.unknown(kind, key)
        if self.failed or type_ is None or base_url is None:
            return None
        return Connection(
            name=self.name,
            type=type_.strip(),
            base_url=base_url,
            credentials=credentials,
            options=options,
            url_secrets=self.url_secrets(raw.get("base_url")),
            **kwargs,
        )

    def url_secrets(self, raw: Any) -> frozenset[str]:
        """The ``${ENV}`` values that start in the base URL's path (the token of
        ``${BASE}/t/${TOKEN}/api``); a value that starts in the scheme or host (``${BASE}``)
        locates the API and is not one."""
        if not isinstance(raw, str) or "${" not in raw:
            return frozenset()
        url = ""
        placed: list[tuple[int, str]] = []  # where each substituted value starts, and it
        last = 0
        for match in _REFERENCE.finditer(raw):
            url += raw[last : match.start()]
            last = match.end()
            if match.group(0) == "$${":
                url += "${"
                continue
            found = self.lookup(match.group(1) or "") if match.group(0).endswith("}") else None
            value, from_env = found or ("", False)
            if from_env:  # a default is written in the file, in clear: not a secret
                placed.append((len(url), value))
            url += value
        url += raw[last:]
        scheme_end = url.find("://")
        path_start = url.find("/", scheme_end + 3) if scheme_end >= 0 else -1
        if path_start < 0:
            return frozenset()
        return frozenset(v.strip("/") for at, v in placed if at >= path_start and v.strip("/"))

    def interpolate_table(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {key: self.interpolate(key, value) for key, value in raw.items()}

    def base_url(self, value: Any) -> str | None:
        if value is None:
            self.problem("base_url", "required (an http or https URL)")
            return None
        url = self.string("base_url", value)
        if url is None:
            return None
        # Never echo the URL: it may carry an interpolated secret.
        try:
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            self.problem("base_url", "is not a valid URL")
            return None
        if parts.scheme not in ("http", "https"):
            self.problem("base_url", "must be an http or https URL")
        elif not parts.hostname:
            self.problem("base_url", "has no host")
        elif parts.username is not None or parts.password is not None:
            self.problem("base_url", "must not carry credentials; use username and password")
        elif parts.query or parts.fragment:
            self.problem("base_url", "must not have a query string or fragment")
        else:
            return url.strip().rstrip("/")
        return None

    def credentials(self, table: dict[str, Any]) -> dict[str, str]:
        found: dict[str, str] = {}
        sub = table.get("credentials", {})
        if not isinstance(sub, dict):
            self.problem("credentials", "must be a table ([name.credentials])")
            sub = {}
        sources = [(k, f"credentials.{k}", v) for k, v in sub.items()]
        sources += [(k, k, v) for k, v in table.items() if k in _CREDENTIAL_KEYS]
        for name, key, value in sources:
            if name in found:
                self.problem(key, "is also set in the other credentials place; keep one")
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                self.problem(key, f"must be a string, not {_kind(value)}")
            elif not value:
                self.problem(key, "is empty")
            else:
                found[name] = value
        return found

    def ca_file(self, value: Any) -> str | None:
        text = self.string("ca_file", value)
        if text is None:
            return None
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.file.parent / path  # relative to the connections file
        if not path.is_file():
            self.problem("ca_file", f"no such file: {path}")
            return None
        return str(path)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
