"""Bearer tokens: each with a role, ``read`` (lists and shows) or ``operate`` (also triggers,
cancels, pauses and redelivers). The tokens file keeps only their SHA-256 (a token is 256 random
bits: a fast hash is enough, and nothing in the file lets one be rebuilt); ``orchestrator tokens
create`` prints a new token once. A token is compared in constant time and never logged.

With no token configured the API answers everyone, and the daemon then serves only on a
loopback address (see :func:`check_bind`); with tokens, every route but ``/healthz``,
``/readyz`` and the callbacks (a remote calls them, and their path holds a token of their own)
needs one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ...errors import ConfigError
from .errors import ApiError

ROLES = ("read", "operate")
OPEN = ("/healthz", "/readyz")  # answered without a token
OPEN_PREFIXES = ("/api/v1/callbacks/",)  # remotes call these: the path's own token is the key
PREFIX = "orch_"


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    role: str
    sha256: str  # of the token, hex
    created_at: float


class Tokens:
    def __init__(self, tokens: list[Token] | None = None) -> None:
        self.tokens = list(tokens or [])

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def role_of(self, presented: str) -> str | None:
        """The role of the token presented, or None; every stored token is compared, each in
        constant time, so that the time taken says nothing of which one matched."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).hexdigest()
        role = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.sha256):
                role = token.role
        return role

    @classmethod
    def load(cls, path: str | Path | None) -> Tokens:
        """The tokens of ``path`` (none if it is None or does not exist)."""
        if path is None or not Path(path).exists():
            return cls()
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            tokens = [
                Token(str(t["id"]), str(t["role"]), str(t["sha256"]), float(t["created_at"]))
                for t in data["tokens"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a tokens file ({type(exc).__name__}: {exc})") from None
        for t in tokens:
            if t.role not in ROLES:
                raise ConfigError(f"{path}: token {t.id}: role {t.role!r} is not one of {ROLES}")
        return cls(tokens)


def create_token(path: str | Path, role: str, *, at: float | None = None) -> tuple[str, Token]:
    """A new token of ``role``, added to the tokens file (made, readable by its owner only, if
    missing); returns the token, which is nowhere else, and its record."""
    if role not in ROLES:
        raise ConfigError(f"--role: one of {', '.join(ROLES)}, got {role!r}")
    tokens = Tokens.load(path).tokens
    secret = PREFIX + secrets.token_urlsafe(32)
    record = Token(
        secrets.token_hex(4),
        role,
        hashlib.sha256(secret.encode()).hexdigest(),
        at if at is not None else time.time(),
    )
    tokens.append(record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"tokens": [_as_dict(t) for t in tokens]}, indent=2)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(body)
    os.replace(temporary, path)
    return secret, record


def _as_dict(token: Token) -> dict[str, object]:
    return {
        "id": token.id,
        "role": token.role,
        "sha256": token.sha256,
        "created_at": token.created_at,
    }


def check_bind(host: str, tokens: Tokens) -> None:
    """Refuse to serve on anything but a loopback address without tokens: the API would be
    open to the network."""
    if tokens.enabled:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"--host {host}: serving beyond this machine needs API tokens (create one with "
            "`orchestrator tokens create --role read|operate`)"
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKENS: web.AppKey[Tokens] = web.AppKey("tokens", Tokens)


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bearer token of a role that allows the method: reads need ``read`` (or ``operate``),
    writes ``operate``."""
    tokens = request.app[TOKENS]
    if not tokens.enabled or request.path in OPEN or request.path.startswith(OPEN_PREFIXES):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "a bearer token is needed", headers={"WWW-Authenticate": "Bearer"})
    role = tokens.role_of(presented.strip())
    if role is None:
        raise ApiError(401, "the token is not valid", headers={"WWW-Authenticate": "Bearer"})
    if request.method not in ("GET", "HEAD", "OPTIONS") and role != "operate":
        raise ApiError(403, f"a {role} token cannot {request.method} {request.path}")
    return await handler(request)
