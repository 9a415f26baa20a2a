"""The resolver that webhook deliveries connect through: it checks every address a name
resolves to against the address policy (:mod:`.guard`), and aiohttp connects to the checked
address."""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .guard import Egress, check_address


class GuardedResolver(AbstractResolver):
    """Resolves, then refuses any answer that is not allowed; aiohttp connects to what it
    returns, i.e. to the checked address."""

    def __init__(self, egress: Egress, inner: AbstractResolver | None = None) -> None:
        self._egress = egress
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            check_address(ipaddress.ip_address(result["host"]), self._egress, host)
        return results

    async def close(self) -> None:
        await self._inner.close()
