"""SSRF guard: webhook destinations on loopback, private, link-local, metadata or other
non-global addresses are refused unless the operator allows them. Checked on every resolved
address, and the connection goes to the checked address (a resolver that validates), so a name
that resolves to a public address first and a private one later cannot slip through (the
resolver is :mod:`.resolver`'s: this module does not import aiohttp)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import ConfigError, PermanentError

if TYPE_CHECKING:
    from ..model.dag import DAG

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_ENV = "ORCHESTRATOR_WEBHOOK_ALLOW"


@dataclass(frozen=True, slots=True)
class Egress:
    """Which non-global destinations are allowed: ``loopback``, ``private`` (RFC 1918, ULA),
    ``link-local``, or CIDR ranges. Nothing by default."""

    loopback: bool = False
    private: bool = False
    link_local: bool = False
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, spec: str | None) -> Egress:
        words = [w.strip() for w in (spec or "").split(",") if w.strip()]
        nets = []
        flags = {"loopback": False, "private": False, "link-local": False}
        for word in words:
            if word in flags:
                flags[word] = True
            else:
                try:
                    nets.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    raise ConfigError(
                        f"{ALLOW_ENV}: {word!r} is not loopback, private, link-local or a CIDR"
                    ) from None
        return cls(flags["loopback"], flags["private"], flags["link-local"], tuple(nets))

    @classmethod
    def from_env(cls) -> Egress:
        return cls.parse(os.environ.get(ALLOW_ENV))

    def allows(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.networks):
            return True
        if ip.is_loopback:
            return self.loopback
        if ip.is_link_local:  # 169.254.169.254 (cloud metadata) is link-local
            return self.link_local
        if ip.is_private:
            return self.private and not ip.is_unspecified and not ip.is_reserved
        return ip.is_global and not ip.is_multicast


class DestinationRefused(PermanentError):
    """A webhook destination the address policy refuses: the delivery fails, not retried (the
    policy is the sending process's; ``webhooks redeliver`` under another one sends it)."""


def allow_word(ip: IPAddress) -> str:
    """What :data:`ALLOW_ENV` needs to hold to allow ``ip``: ``loopback``, ``link-local``,
    ``private``, or the address itself as a CIDR."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private and not ip.is_unspecified and not ip.is_reserved:
        return "private"
    return f"{ip}/{ip.max_prefixlen}"


def check_address(ip: IPAddress, egress: Egress, host: str) -> None:
    if not egress.allows(ip):
        raise DestinationRefused(
            f"webhook destination {host} resolves to {ip}, which is not a public address "
            f"(allow it with {ALLOW_ENV})"
        )


def check_literal(host: str, egress: Egress) -> None:
    """Refuse, before resolving, a URL whose host is a literal address not allowed."""
    from ..model.webhook_definitions import literal_ip

    ip = literal_ip(host)
    if ip is not None:
        check_address(ip, egress, host)


def literal_refused(host: str, egress: Egress) -> IPAddress | None:
    """The address a URL host writes literally, if ``egress`` refuses it (a warning when a DAG
    is validated: the policy is enforced when sending, by the process that sends)."""
    from ..model.webhook_definitions import literal_ip

    ip = literal_ip(host)
    return ip if ip is not None and not egress.allows(ip) else None


def webhook_warnings(dag: DAG, egress: Egress | None = None) -> list[str]:
    """One line per webhook whose URL writes an address the policy refuses (loopback,
    private, link-local): not an error, since the policy is enforced when sending, by the
    process that sends, but its deliveries will fail unless that process allows it. Reads
    ``$ORCHESTRATOR_WEBHOOK_ALLOW`` when no ``egress`` is given (a bad value raises)."""
    egress = Egress.from_env() if egress is None else egress
    where = dag.source or f"dag {dag.name!r}"
    warnings = []
    for job_id, hooks in [(None, dag.webhooks)] + [(j.id, j.webhooks) for j in dag.jobs.values()]:
        for hook in hooks if isinstance(hooks, list) else ():
            url = hook.get("url") if isinstance(hook, dict) else None
            try:
                host = urlsplit(url).hostname if isinstance(url, str) else None
            except ValueError:
                continue  # a syntax error, reported by validate_dag
            ip = literal_refused(host, egress) if host else None
            if ip is None:
                continue
            job = f"job {job_id!r}: " if job_id is not None else ""
            warnings.append(
                f"{where}: {job}webhook {hook.get('name')!r}: field 'url': {host} is not a public "
                f"address: deliveries to it will be refused (allow them with "
                f"{ALLOW_ENV}={allow_word(ip)})"
            )
    return warnings
