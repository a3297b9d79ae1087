"""Typed environment helpers that refuse bad values instead of guessing."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_required(name: str, why: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured(f"Set the environment variable {name}: {why}")
    return value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use 1/0, true/false, yes/no")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_networks(name: str) -> list:
    """Comma-separated networks (10.0.5.0/24, fd12::/64, 10.0.5.7), each checked."""
    import ipaddress

    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an IP network; use e.g. 10.0.5.0/24 or fd12::/64"
            ) from None
    return networks


def env_key_bindings(name: str) -> list[str]:
    """VAR@host[|host2] entries: a deployment variable judges may use for their key, bound to
    the hosts it may be sent to. An entry without a host is refused: a deployment secret goes
    only where its operator said it may."""
    import re

    entries = []
    for item in env_list(name, []):
        variable, _, hosts = item.partition("@")
        variable = variable.strip()
        bound = [h.strip().lower().rstrip(".") for h in hosts.split("|") if h.strip()]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
            raise ImproperlyConfigured(
                f"{name}: {item!r} does not start with an environment variable's name; "
                "write VAR@host, e.g. OPENAI_API_KEY@api.openai.com"
            )
        if not bound:
            raise ImproperlyConfigured(
                f"{name}: {variable} is bound to no host, so its key could be sent anywhere; "
                f"bind it to the hosts it is for: {variable}@api.openai.com "
                f"(several: {variable}@host1|host2)"
            )
        entries.append(f"{variable}@{'|'.join(bound)}")
    return entries


def env_fernet_keys(name: str) -> list[str]:
    """Comma-separated Fernet keys (each 32 url-safe base64 bytes, as
    `Fernet.generate_key()` makes them); the first encrypts, every one decrypts."""
    from cryptography.fernet import Fernet

    keys = env_list(name, [])
    for i, key in enumerate(keys):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: key {i + 1} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None
    return keys
