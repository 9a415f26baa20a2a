"""Pushed completion: the URL a remote calls when an attempt's job ends, and the attempt a
called URL names.

An attempt's token is ``orcb_`` and the HMAC-SHA256 of ``run/job/attempt`` under the daemon's
key (32 random bytes kept beside the database, readable by its owner only): unguessable, bound
to that one attempt, and the same after a restart, so that an adopted attempt's callback still
finds it. Nothing is stored: the host learns the tokens of its attempts as the engine asks for
their URLs, and forgets them with their run. A token counts only while its attempt is the
job's current one and is being followed (see :meth:`RunHost.callback`); the callback then only
makes the engine poll at once, and the poll decides: the callback's body is never trusted.

Tokens have one shape (:data:`TOKEN_SHAPE`), masked in every log line and remote text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .. import logs
from ..errors import ConfigError

__all__ = ["PATH", "TOKEN_SHAPE", "Attempt", "Callbacks", "load_key"]

PATH = "/api/v1/callbacks/"  # the daemon's route, under its public URL
PREFIX = "orcb_"
TOKEN_SHAPE = rf"{PREFIX}[A-Za-z0-9_-]{{43}}"
KEY_BYTES = 32

Attempt = tuple[str, str, int]  # run id, job id, attempt number


class Callbacks:
    """The callback URLs of the attempts of one host, under ``public_url`` (the daemon's
    address as remotes reach it), signed with ``key``."""

    def __init__(self, public_url: str, key: bytes) -> None:
        if len(key) < 16:
            raise ConfigError("the callback key is too short (16 bytes at least)")
        self.base = public_url.rstrip("/") + PATH
        self._key = key
        self._tokens: dict[str, Attempt] = {}
        self._by_run: dict[str, set[str]] = {}
        logs.add_secret_shape(TOKEN_SHAPE)

    def token(self, run_id: str, job_id: str, attempt: int) -> str:
        message = f"{run_id}/{job_id}/{attempt}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def url(self, run_id: str, job_id: str, attempt: int) -> str:
        """The URL that ends this attempt's wait (the engine's ``CallbackUrls`` port); the
        token is known from now on, until the run is forgotten."""
        token = self.token(run_id, job_id, attempt)
        self._tokens[token] = (run_id, job_id, attempt)
        self._by_run.setdefault(run_id, set()).add(token)
        return self.base + token

    def find(self, token: str) -> Attempt | None:
        """The attempt ``token`` is bound to, if it is one of a run of this host; ``None``
        for any other string (compared by dictionary lookup: a token is 256 bits of HMAC, so
        that its timing tells nothing usable)."""
        return self._tokens.get(token)

    def forget(self, run_id: str) -> None:
        """The run ended (or was let go): its tokens answer nothing any more."""
        for token in self._by_run.pop(run_id, ()):
            self._tokens.pop(token, None)


def load_key(path: Path) -> bytes:
    """The callback key kept in ``path``, made (readable by its owner only) if missing."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(KEY_BYTES)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_key(path)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        return key
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the callback key: {exc.strerror}") from None
    if len(key) < KEY_BYTES:
        raise ConfigError(f"{path}: not a callback key ({len(key)} bytes, {KEY_BYTES} expected)")
    return key
