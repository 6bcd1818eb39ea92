"""Who can reach a deployment: one warning line when `serving.host` is not loopback.

Pure (no DNS, no sockets): a host name other than `localhost` may resolve to anything,
so it is treated as reachable from the network. `plan`, `validate` and `up` print the
line on stderr; it never stops anything, since listening on the network can be the
point (a GPU box serving a team).
"""

from __future__ import annotations

import ipaddress

from llmdeploy.profile.model import Profile

_LOCAL_NAMES = {"localhost", "localhost.", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: whatever it resolves to, we cannot promise it is local
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback; Python < 3.13 says no
    return address.is_loopback


def exposure_warning(profile: Profile) -> str | None:
    """The `warning: …` line for a server other machines can reach, or None.

    Louder without `serving.api_key`: then anyone who can reach the port can use the
    model (and the GPU time behind it).
    """
    host = profile.serving.host
    if is_loopback(host):
        return None
    where = _where(host)
    if profile.serving.api_key is None:
        return (
            f"warning: serving.host {host} {where}: the server is open to anyone on the "
            "network, with no API key (set serving.api_key: ${MY_KEY}, or host: 127.0.0.1)"
        )
    return (
        f"warning: serving.host {host} {where}: other machines can reach the server; "
        "requests need the API key"
    )


def _where(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "is a host name, not loopback"
    return "listens on every interface" if address.is_unspecified else "is not loopback"
