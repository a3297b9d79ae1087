"""Where a judge may send graded text: a judge's base URL is checked when it is saved and
again at every connection, so a name whose DNS answer changes in between (rebinding) gets
nowhere.

* Only http and https, a host, no user:password@ part.
* Every address the host resolves to is classified, and one refused address refuses the host:
  - always refused: cloud metadata (169.254.169.254, fd00:ec2::254, 100.100.100.200,
    168.63.129.16, ...), link-local, "this network" (0.0.0.0/8) and unspecified, multicast,
    reserved and broadcast;
  - refused unless the operator allows them (settings.JUDGE_ALLOW_PRIVATE_URLS, or the
    networks in settings.JUDGE_PRIVATE_NETWORKS): loopback, private (RFC 1918, ULA), shared
    CGNAT 100.64/10 and every other address that is not publicly routable. A vLLM or Ollama
    on the local network is a real use; a project admin pointing a judge at the database or
    at the cloud's metadata service is not.
* An IPv4 address written inside IPv6 (::ffff:a.b.c.d, 64:ff9b::/96, 6to4, Teredo) is judged
  by its IPv4 address too; numeric spellings (2852039166, 0xa9fea9fe, 0251.0376.0251.0376)
  are judged by what the resolver makes of them.
* `connect()` resolves once, checks every address, and connects to a checked address, never
  to the name again; TLS (grading.judges.transport) still verifies the certificate for the name.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FIELD = "base_url"

# Instance metadata and host services of clouds: they hand out credentials to whoever asks.
METADATA = {
    ipaddress.ip_address(a): name
    for a, name in [
        ("169.254.169.254", "AWS, GCP, Azure, OpenStack and Oracle Cloud"),
        ("169.254.170.2", "AWS ECS task"),
        ("169.254.169.253", "AWS DNS"),
        ("169.254.169.123", "AWS time"),
        ("fd00:ec2::254", "AWS (IPv6)"),
        ("fd00:ec2::253", "AWS DNS (IPv6)"),
        ("100.100.100.200", "Alibaba Cloud"),
        ("168.63.129.16", "Azure host"),
        ("192.0.0.192", "Oracle Cloud (classic)"),
    ]
}
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # Linux connects 0.x.y.z to the host itself
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

ALLOW_HINT = (
    "this server refuses private and loopback judge addresses unless its operator allows "
    "them (ASSAY_JUDGE_ALLOW_PRIVATE_URLS=1, or the network in ASSAY_JUDGE_PRIVATE_NETWORKS)"
)


class RefusedURL(ValueError):
    """A base URL that can never be a judge's, or whose host resolves to a refused address.
    The message says why; `field` is the judge field it belongs to."""

    field = FIELD


class AddressRefused(Exception):
    """At connection time: the host resolved to an address judge calls may not reach. Not an
    OSError, so the transport and the client never read it as a transient network fault."""


@dataclass(frozen=True)
class Policy:
    allow_private: bool = False
    private_networks: tuple[IPNetwork, ...] = ()

    def allows(self, address: IPAddress) -> bool:
        return self.allow_private or any(
            address.version == n.version and address in n for n in self.private_networks
        )


def current_policy() -> Policy:
    """The operator's setting, read at each check (tests change it per test)."""
    from django.conf import settings

    return Policy(
        allow_private=bool(getattr(settings, "JUDGE_ALLOW_PRIVATE_URLS", False)),
        private_networks=tuple(getattr(settings, "JUDGE_PRIVATE_NETWORKS", ())),
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in IPV4_COMPATIBLE and int(address) > 1:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _kind(address: IPAddress) -> tuple[str, str]:
    """("refused" | "private" | "public", what the address is) for one address alone."""
    if address in METADATA:
        return "refused", f"a cloud metadata address ({METADATA[address]})"
    if address.is_unspecified or (address.version == 4 and address in THIS_NETWORK):
        return "refused", "an unspecified ('this host') address"
    if address.is_link_local:
        return "refused", "a link-local address"
    if address.is_multicast:
        return "refused", "a multicast address"
    if address.is_loopback:
        return "private", "a loopback address"
    if address.is_reserved or address == ipaddress.IPv4Address("255.255.255.255"):
        return "refused", "a reserved address"
    if address.version == 4 and address in SHARED:
        return "private", "a shared (carrier-grade NAT) address"
    if address.is_private or getattr(address, "is_site_local", False):
        return "private", "a private address"
    if not address.is_global:
        return "private", "an address that is not publicly routable"
    return "public", "a public address"


RANK = {"public": 0, "private": 1, "refused": 2}


def classify(address: IPAddress) -> tuple[str, str]:
    """The worst of the address and any IPv4 address it carries inside it."""
    if address.version == 6 and address.ipv4_mapped is not None:
        return _kind(address.ipv4_mapped)  # ::ffff:a.b.c.d is a.b.c.d on the wire
    if address.version == 6 and address in NAT64:
        # DNS64 on an IPv6-only host answers 64:ff9b::a.b.c.d for every IPv4-only name.
        return _kind(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    kinds = [_kind(address)]
    if address.version == 6:
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        kinds += [_kind(v4) for v4 in _embedded_ipv4(address)]
    return max(kinds, key=lambda k: RANK[k[0]])


def refusal(address: IPAddress, policy: Policy, host: str = "") -> str:
    """Why judge calls may not go to `address` (which `host` resolved to), or "" if they may."""
    kind, what = classify(address)
    if kind == "public" or (kind == "private" and policy.allows(address)):
        return ""
    rule = "judge calls never go there" if kind == "refused" else ALLOW_HINT
    shown = str(address)
    if address.version == 6 and address.ipv4_mapped is not None:
        shown = f"::ffff:{address.ipv4_mapped}"
    if host and _literal(host) != address:
        return f"{host} resolves to {shown}, {what}: {rule}"
    return f"{shown} is {what}: {rule}"


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int


@functools.lru_cache(maxsize=256)  # per request on the hot path; a judge has one URL
def parse(url: str) -> Target:
    """Scheme, host and port of a judge URL, or RefusedURL saying what is wrong with it."""
    if not isinstance(url, str) or not url:
        raise RefusedURL("Give the judge's http(s) URL, e.g. https://api.openai.com/v1.")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        raise RefusedURL("The URL contains spaces, backslashes or control characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        shown = f"'{parts.scheme}'" if parts.scheme else "no scheme"
        raise RefusedURL(
            f"Judge URLs are http or https only ({shown} given), e.g. https://api.openai.com/v1."
        )
    if "@" in parts.netloc:
        raise RefusedURL(
            "A user name or password in the URL (user:pass@host) is not allowed: enter the "
            "API key in the judge's key field instead."
        )
    host = parts.hostname or ""
    if not host:
        raise RefusedURL("The URL has no host, e.g. https://api.openai.com/v1.")
    if not host.isascii():
        raise RefusedURL("Write the host in ASCII (an international name in its xn-- form).")
    try:
        port = parts.port
    except ValueError:
        raise RefusedURL("The port is not a number from 1 to 65535.") from None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise RefusedURL("The port is not a number from 1 to 65535.")
    return Target(parts.scheme, host, port)


def resolve(host: str, port: int) -> list[tuple[int, tuple]]:
    """(family, sockaddr) for each address of `host`, as the OS resolver answers now."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen, out = set(), []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr not in seen:
            seen.add(sockaddr)
            out.append((family, sockaddr))
    return out


def _address(sockaddr: tuple) -> IPAddress:
    return ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])


def _checked(host: str, resolved: list[tuple[int, tuple]], policy: Policy) -> None:
    for _family, sockaddr in resolved:
        why = refusal(_address(sockaddr), policy, host)
        if why:
            raise AddressRefused(why)


def check_url(url: str, policy: Policy | None = None) -> Target:
    """When a judge is saved: the URL's form, and the addresses its host resolves to now.
    A name that does not resolve from here is accepted (workers may see names the web server
    does not); the check at connection time is the one that always runs."""
    policy = current_policy() if policy is None else policy
    target = parse(url)
    try:
        resolved = resolve(target.host, target.port)
    except (OSError, UnicodeError):
        return target
    try:
        _checked(target.host, resolved, policy)
    except AddressRefused as exc:
        raise RefusedURL(f"Refused: {exc}.") from None
    return target


def connect(
    host: str,
    port: int,
    timeout: float | None,
    source_address=None,
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
) -> socket.socket:
    """A TCP connection to `host`: resolve once, refuse the host if any address is refused,
    then connect to the checked addresses in the resolver's order. AddressRefused, or the
    last OSError when none answers. With `deadline` (time.monotonic()), the addresses share
    the time left rather than each having `timeout`: TimeoutError once it has passed."""
    policy = current_policy() if policy is None else policy
    resolved = resolve(host, port)
    if not resolved:
        raise OSError(f"{host} has no address")
    _checked(host, resolved, policy)
    last: OSError | None = None
    for family, sockaddr in resolved:
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise TimeoutError(f"no connection to {host} before the deadline")
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            if isinstance(timeout, int | float):
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    assert last is not None
    raise last


# --- Which key may go where -------------------------------------------------------------


def _host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def key_bindings() -> dict[str, set[str]]:
    """settings.JUDGE_KEY_VARIABLES as {variable: hosts}. An entry without a host binds
    nothing (settings refuse it at startup; an override in a test or shell is read the same)."""
    from django.conf import settings

    hosts: dict[str, set[str]] = {}
    for entry in getattr(settings, "JUDGE_KEY_VARIABLES", None) or []:
        name, _, bound = entry.partition("@")
        for host in bound.split("|"):
            if _host(host):
                hosts.setdefault(name.strip(), set()).add(_host(host))
    return hosts


def key_refusal(variable: str, host: str) -> str:
    """Why the worker may not send the deployment's key in `variable` to `host`, or "" if it
    may. Only the operator decides: ASSAY_JUDGE_KEY_VARIABLES binds each variable judges may
    use to the hosts it is for (OPENAI_API_KEY@api.openai.com). With none bound, no judge may
    use any deployment variable; a project enters its own key instead."""
    hosts = key_bindings()
    if not hosts:
        return (
            f"this server lets no judge use a deployment variable ({variable}): enter the "
            "project's own API key on the judge instead (the operator may bind a variable to "
            "its hosts in ASSAY_JUDGE_KEY_VARIABLES, e.g. OPENAI_API_KEY@api.openai.com)"
        )
    if variable not in hosts:
        return (
            f"{variable} is not one of the key variables this server lets judges use "
            f"(ASSAY_JUDGE_KEY_VARIABLES: {', '.join(sorted(hosts))}); or enter the project's "
            "own API key instead"
        )
    allowed = hosts[variable]
    if _host(host) in allowed:
        return ""
    return f"the key in {variable} may be sent only to {', '.join(sorted(allowed))}, not {host}"


def project_key_refusal(bound_host: str, host: str) -> str:
    """Why a project's own key, entered for a judge at `bound_host`, may not go to `host`."""
    if bound_host and _host(bound_host) == _host(host):
        return ""
    return (
        f"the project's key was entered for {bound_host or 'no host'} and is sent only there, "
        f"not to {host}: a project admin must enter it again for this URL"
    )
