"""Names the handler reads itself, outside the answer table.

- ``namespace_of``: the namespace label of a cluster name, for the resolver role's
  namespace filter (names of namespaces mcdns does not watch are forwarded);
- ``pod_entry``: the answer of a pod name (``10-1-2-3.<ns>.pod.<zone>``, ``pods
  insecure``), the IP read from its first label (``undash``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection

from mcdns.answers import rdata as rd
from mcdns.answers.entry import Entry, make_entry
from mcdns.answers.slots import TAG_NONE
from mcdns.answers.zone import Zone
from mcdns.proto import QNAME_POINTER, RCODE_NOERROR, T_A, T_AAAA, T_ANY


def namespace_of(name: bytes, zone: Zone) -> bytes:
    """The namespace label of a name ``...<ns>.svc.<zone>`` or ``...<ns>.pod.<zone>``;
    b"" for the names above the namespaces (the apex, ``svc.<zone>``, ``dns-version``),
    which every namespace filter holds."""
    labels, i, cut = [], 0, len(name) - len(zone.wire)
    while i < cut:
        labels.append(name[i + 1:i + 1 + name[i]])
        i += name[i] + 1
    if len(labels) >= 2 and labels[-1] in (b"svc", b"pod"):
        return labels[-2]
    return b""


def undash(label: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP of a pod name label (1-2-3-4 or an IPv6 with '-' for ':'), else None."""
    try:
        if label.count("-") == 3 and all(p.isdigit() for p in label.split("-")):
            return ipaddress.IPv4Address(label.replace("-", "."))
        return ipaddress.IPv6Address(label.replace("-", ":"))
    except ValueError:
        return None


def pod_entry(name: bytes, qtype: int, zone: Zone, pod_zone: bytes | None,
              namespaces: Collection[str], ttl: int, pair: Callable[..., tuple[int, int]]
              ) -> Entry | None:
    """``<a-b-c-d>.<ns>.pod.<zone>`` in ``pods insecure`` mode (``pod_zone`` is then
    ``pod.<zone>``): its address (or NODATA for another type), None when the name is not
    one. ``pair``: the table's ``Slots.pair``, for the answer's counters."""
    pod_zone = pod_zone or b""
    rest = name[1 + name[0]:]
    if len(rest) <= len(pod_zone) or len(rest) - 1 - rest[0] != len(pod_zone):
        return None  # not exactly <ip>.<ns>.pod.<zone>
    if rest[1:1 + rest[0]].decode("ascii", "replace") not in namespaces:
        return None
    ip = undash(name[1:1 + name[0]].decode("ascii", "replace"))
    if ip is None:
        return None
    want = T_A if ip.version == 4 else T_AAAA
    if qtype not in (want, T_ANY):
        return zone.negative_entry(RCODE_NOERROR, qtype)
    rr = rd.rr(QNAME_POINTER, want, ttl, ip.packed)
    return make_entry(RCODE_NOERROR, 1, 0, 0, rr, -1,
                      pair(zone.index, qtype, RCODE_NOERROR, TAG_NONE))
