"""The ``Authorization`` header that a connection's credentials make."""

from __future__ import annotations

import base64
from collections.abc import Mapping

__all__ = ["bearer_or_basic"]


def bearer_or_basic(credentials: Mapping[str, str]) -> dict[str, str]:
    """``Bearer <token>`` with a credential ``token``, else ``Basic`` with ``username`` and
    ``password``; no header without either."""
    if credentials.get("token"):
        return {"Authorization": f"Bearer {credentials['token']}"}
    if credentials.get("username"):
        pair = f"{credentials['username']}:{credentials.get('password', '')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}
