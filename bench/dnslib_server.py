"""The naive Python baseline: dnslib's own ``DNSServer`` answering a generated zone.

This is how a first Python DNS server is usually written: dnslib parses every query into
objects, a resolver looks the name up and dnslib builds and packs a reply, one thread per
packet (``socketserver.ThreadingMixIn``). The benchmark reports mcdns against it so the
cost of that approach is visible. It answers the same records as Knot (the zone file from
``bench.gen``): the RRset, NODATA or NXDOMAIN with the SOA in the authority section, AA set.

Usage: ``python -m bench.dnslib_server --zone FILE --port 5300``
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections import defaultdict
from pathlib import Path
from types import FrameType

from dnslib import QTYPE, RCODE, RR, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Authoritative answers from one zone's records, looked up by (name, type)."""

    def __init__(self, zone: str) -> None:
        rrs = RR.fromZone(zone)
        soa = [rr for rr in rrs if rr.rtype == QTYPE.SOA]
        if len(soa) != 1:
            raise ValueError("the zone needs exactly one SOA record")
        self.soa: RR = soa[0]
        self.origin: DNSLabel = self.soa.rname
        self.rrsets: dict[tuple[DNSLabel, int], list[RR]] = defaultdict(list)
        self.names: set[DNSLabel] = set()
        for rr in rrs:
            self.rrsets[(rr.rname, rr.rtype)].append(rr)
            self._add_name(rr.rname)

    def _add_name(self, name: DNSLabel) -> None:
        # Empty non-terminals exist too (NODATA, not NXDOMAIN), as in Knot.
        label = name.label
        for i in range(len(label) - len(self.origin.label) + 1):
            self.names.add(DNSLabel(label[i:]))

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname, qtype = request.q.qname, request.q.qtype
        if not qname.matchSuffix(self.origin):
            reply.header.rcode = RCODE.REFUSED
            reply.header.aa = 0
            return reply
        answer = self.rrsets.get((qname, qtype))
        if answer:
            for rr in answer:
                reply.add_answer(rr)
            return reply
        if qname not in self.names:
            reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(self.soa)
        return reply


def serve(zone: Path, address: str, port: int) -> None:
    resolver = ZoneResolver(zone.read_text())
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(resolver, port=port, address=address, logger=quiet)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start_thread()
    print(f"dnslib baseline on {address}:{port}", file=sys.stderr, flush=True)
    stop.wait()
    server.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zone", type=Path, required=True)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5300)
    a = ap.parse_args(argv)
    serve(a.zone, a.address, a.port)


if __name__ == "__main__":
    main()
