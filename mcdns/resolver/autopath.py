"""Autopath: the client's search path walked on the server, as CoreDNS's ``autopath``.

A pod's resolver (glibc, musl) with ``ndots:5`` asks for ``api.example.com`` first as
``api.example.com.<ns>.svc.cluster.local``, then with each further search domain, and only
then as itself: four lookups (times A and AAAA) where one would do. mcdns runs in the pod
(or knows its search path from config), so when the question is a name under the *first*
search domain that does not exist, it walks the rest of the path itself, in the client's
order (each further search domain, then the bare name), and answers with the first reply
that is not NXDOMAIN: a CNAME from the name asked to the name found, then that name's
answer, so the client stops searching. Exactly as CoreDNS does (plugin/autopath):

- a name that exists under the first search domain (a real service) is answered as
  always; the walk only starts on NXDOMAIN;
- when every step is NXDOMAIN, or a step fails (SERVFAIL, REFUSED, no reply), the first
  reply goes back as it was and the client's own search goes on;
- a step that is NODATA (NOERROR, no answer) is returned with the question put back and
  no CNAME: there is no record to point at, and a client searching for A and AAAA at
  once takes the NOERROR of one type beside the other's answer (musl treats an NXDOMAIN
  there as "name not found").

Each step goes through the handler as a client's query would (``ask``): cluster names
from the table or the cluster resolver, other names through the upstreams and the cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from mcdns.answers.rdata import name_wire
from mcdns.config import Config, ConfigError, search_problem
from mcdns.proto import RCODE_NOERROR, RCODE_NXDOMAIN
from mcdns.resolver import wire

Ask = Callable[[bytes], "bytes | Awaitable[bytes | None] | None"]
"""Answer one query as a client's (without autopath): the handler's step."""
Keep = Callable[[bytes, int], None]
"""Told each answer the walk built: (the reply without OPT record, its lowest TTL)."""


def read_search(path: str) -> tuple[str, ...]:
    """The domains of the last ``search`` (or ``domain``) line of a resolv.conf file."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    found: tuple[str, ...] = ()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("search", "domain"):
            found = tuple(p.strip(".").lower() for p in parts[1:] if p.strip("."))
    return found


class Autopath:
    """The search path, as wire-form suffixes, and the walk."""

    def __init__(self, search: tuple[str, ...]) -> None:
        import dnslib  # noqa: F401 - imported now, not in the first client's lookup

        self.search = search
        self.first = name_wire(search[0] + ".")
        self.rest = (*(name_wire(s + ".")[:-1] for s in search[1:]), b"")
        """Suffixes tried after the first, the bare name ("") last; without the root."""

    @classmethod
    def from_config(cls, cfg: Config) -> Autopath | None:
        """The configured search path (``search``, else ``resolv_conf``'s), None when
        ``autopath`` is off; ConfigError when autopath cannot use it."""
        if not cfg.autopath:
            return None
        search = cfg.search or read_search(cfg.resolv_conf)
        problem = search_problem(search, cfg.zone)
        if problem is not None:
            raise ConfigError("search" if cfg.search else "resolv_conf", problem)
        return cls(search)

    def applies(self, name: bytes) -> bool:
        """Whether lower-case wire name ``name`` lies under the first search domain."""
        cut = len(name) - len(self.first)
        if cut <= 0 or not name.endswith(self.first):
            return False
        i = 0
        while i < cut:  # on a label boundary, not inside a label
            i += name[i] + 1
        return i == cut

    async def answer(self, query: bytes, qend: int, ask: Ask, limit: int, opt: bytes,
                     keep: Keep | None = None) -> bytes | None:
        """The reply to ``query`` (a question under the first search domain): the first
        non-NXDOMAIN step as a CNAME and its answer, or the question's own reply.
        ``limit``: the largest reply the client takes (else TC, with ``opt``); ``keep``
        is told the answers built (not the question's own replies)."""
        first = await _settled(ask(query))
        if first is None or first[3] & 0x0F != RCODE_NXDOMAIN:
            return first
        base = query[12:qend - 4 - len(self.first)].lower()  # the labels before the domain
        for suffix in self.rest:
            step = query[:12] + base + suffix + b"\x00" + query[qend - 4:]
            reply = await _settled(ask(step))
            if reply is None or reply[3] & 0x0F not in (RCODE_NOERROR, RCODE_NXDOMAIN):
                return first
            if reply[3] & 0x0F == RCODE_NOERROR:
                out, plain, ttl = _as_asked(reply, query, qend)
                if keep is not None:
                    keep(plain, ttl)
                if len(out) > limit:
                    return wire.short_reply(query, qend, RCODE_NOERROR, opt, tc=True)
                return out
        return first


async def _settled(resp: bytes | Awaitable[bytes | None] | None) -> bytes | None:
    if resp is None or isinstance(resp, bytes):
        return resp
    return await resp


def _as_asked(reply: bytes, query: bytes, qend: int) -> tuple[bytes, bytes, int]:
    """``reply`` (to a step) as the answer to ``query``: the question put back and, when
    the reply has records, a CNAME from the name asked to the first record's owner. Also
    the same without its OPT record, and the lowest TTL of its records."""
    import dnslib  # off the hot path: imported at the first walk

    rec = dnslib.DNSRecord.parse(reply)
    asked = dnslib.DNSLabel(_labels(query[12:qend - 4]))
    rec.q.qname = asked
    if rec.rr:
        first = rec.rr[0]
        rec.rr.insert(0, dnslib.RR(asked, dnslib.QTYPE.CNAME, ttl=first.ttl,
                                   rdata=dnslib.CNAME(first.rname)))
    rec.header.aa = 0  # partly the upstreams' answer: not authoritative
    out: bytes = rec.pack()
    rec.ar = [rr for rr in rec.ar if rr.rtype != dnslib.QTYPE.OPT]
    ttls = [rr.ttl for rr in (*rec.rr, *rec.auth, *rec.ar)]
    return out, rec.pack(), min(ttls, default=0)


def _labels(name: bytes) -> list[bytes]:
    labels, i = [], 0
    while i < len(name) and name[i]:
        labels.append(name[i + 1:i + 1 + name[i]])
        i += name[i] + 1
    return labels
