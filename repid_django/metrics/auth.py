"""Who may read the metrics view: ``REPID["METRICS_AUTH"]``.

A dict of the ways in; a request that meets any one of them is let in, every other gets 403::

    REPID = {
        "METRICS_AUTH": {
            "staff": True,                       # a logged-in staff user (the default)
            "token": "<a random secret>",        # Authorization: Bearer <token>
            "ips": ["10.0.0.0/8", "127.0.0.1"],  # REMOTE_ADDR in one of these networks
        },
    }

``None`` (the default) means ``{"staff": True}``; in a dict, ``staff`` is ``True`` unless set
to ``False``. From the environment: ``REPID_METRICS_AUTH`` as JSON. The token is compared in
constant time and must be at least 16 characters. ``ips`` reads ``REMOTE_ADDR``, the address
that connected: behind a reverse proxy that is the proxy's, so use a token there.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.http import HttpRequest

from .. import conf

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
KEY = "METRICS_AUTH"
MIN_TOKEN = 16
EXAMPLE = 'Use {"staff": True, "token": "<secret>", "ips": ["10.0.0.0/8"]} (any of the keys).'


@dataclass(frozen=True, slots=True)
class MetricsAuth:
    staff: bool = True
    token: str | None = None
    networks: tuple[Network, ...] = ()

    def allows(self, request: HttpRequest) -> bool:
        if self.staff:
            user = getattr(request, "user", None)
            if user is not None and user.is_active and user.is_staff:
                return True
        if self.token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            ):
                return True
        if self.networks:
            try:
                address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
            except ValueError:
                return False
            return any(address in network for network in self.networks)
        return False


def parse(value: Any, from_env: bool = False) -> MetricsAuth:
    """The ``METRICS_AUTH`` value as a :class:`MetricsAuth`; :class:`conf.SettingError` if bad."""
    source = f"environment variable {conf.ENV_PREFIX}{KEY}" if from_env else f"REPID[{KEY!r}]"

    def bad(problem: str, fix: str = EXAMPLE) -> conf.SettingError:
        return conf.SettingError(KEY, source, problem, fix)

    if value is None:
        return MetricsAuth()
    if not isinstance(value, Mapping) or not value:
        raise bad(f"{value!r} is not a non-empty dict")
    unknown = set(value) - {"staff", "token", "ips"}
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(map(repr, unknown)))}")
    staff = value.get("staff", True)
    if not isinstance(staff, bool):
        raise bad(f"'staff' is {staff!r}, not True or False")
    token = value.get("token")
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN):
        raise bad(
            f"'token' must be a string of at least {MIN_TOKEN} characters",
            "Make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
        )
    ips = value.get("ips", ())
    if isinstance(ips, str) or not isinstance(ips, list | tuple):
        raise bad(f"'ips' is {ips!r}, not a list of addresses or networks")
    try:
        networks = tuple(ipaddress.ip_network(str(ip), strict=False) for ip in ips)
    except ValueError as exc:
        raise bad(f"'ips': {exc}", 'Use addresses or networks, e.g. ["10.0.0.0/8"].') from None
    return MetricsAuth(staff, token, networks)


@lru_cache(maxsize=1)
def metrics_auth() -> MetricsAuth:
    """The project's setting, parsed once (again when ``REPID`` changes)."""
    raw, from_env = conf.raw_settings()
    return parse(raw[KEY], KEY in from_env)


conf.on_change(metrics_auth.cache_clear)
