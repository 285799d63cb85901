"""The explain record across the forwarder role: the cluster resolver's own record.

A forwarder answers no cluster name itself; ``dig NAME CH TXT`` in its pod should still
say why NAME answers what it answers. The stub mcdns behind ``cluster_upstreams`` made
that decision, so the forwarder asks it the same CH TXT question and passes its strings
on after its own (where the answer came from, and how long it stays cached).
"""

from __future__ import annotations

from mcdns.proto import CLASS_CH, RCODE_NAMES, T_TXT
from mcdns.resolver.upstream import Upstream, UpstreamError, exchange

_CH_TXT = T_TXT.to_bytes(2, "big") + CLASS_CH.to_bytes(2, "big")


async def ask(upstreams: list[Upstream], name: bytes, timeout: float) -> list[str]:
    """The TXT strings of ``name``'s explain record from the first of ``upstreams``
    (lower-case wire name), each prefixed "cluster: "; or one string saying why none."""
    if not upstreams:
        return ["cluster: none (no cluster upstream)"]
    up = upstreams[0]
    try:
        reply = await exchange(up, name + _CH_TXT, False, timeout)
    except UpstreamError as e:
        return [f"cluster: unavailable ({e})"]
    rcode = reply[3] & 0x0F
    if rcode:
        return [f"cluster: {up.name} answered {RCODE_NAMES.get(rcode, str(rcode))}"]
    import dnslib  # a debugging query: imported when first asked

    try:
        texts = [b"".join(rr.rdata.data).decode("utf-8", "replace")
                 for rr in dnslib.DNSRecord.parse(reply).rr if rr.rtype == T_TXT]
    except Exception as e:  # dnslib raises several types; all mean "malformed"
        return [f"cluster: unreadable reply from {up.name} ({type(e).__name__})"]
    return [f"cluster: {t}" for t in texts]
