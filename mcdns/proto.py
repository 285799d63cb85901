"""DNS protocol numbers, defined once for every layer.

The answer builder, the query path, the resolver and the metrics all speak in record
types, classes and rcodes; each used to define the few it needed, and the copies could
drift. Names for metrics labels and logs live here too, beside the numbers they name.
"""

from __future__ import annotations

# Record types (RFC 1035, 3596, 2782, 6891, 5936, 1995)
T_A = 1
T_NS = 2
T_CNAME = 5
T_SOA = 6
T_PTR = 12
T_MX = 15
T_TXT = 16
T_AAAA = 28
T_SRV = 33
T_NAPTR = 35
T_OPT = 41
T_SVCB = 64
T_HTTPS = 65
T_IXFR = 251
T_AXFR = 252
T_ANY = 255

# Classes
CLASS_IN = 1
CLASS_CH = 3
CLASS_ANY = 255

# Response codes (RFC 1035 §4.1.1; BADVERS is an extended rcode, RFC 6891 §6.1.3)
RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
RCODE_BADVERS = 16

OPCODE_QUERY = 0

MAX_NAME = 255  # octets of a name in wire form (RFC 1035 §2.3.4)
UDP_MIN = 512  # a UDP answer's limit without EDNS (RFC 1035 §4.2.1)
TCP_MAX = 65535  # a DNS message over TCP has a 16-bit length (RFC 1035 §4.2.2)
QNAME_POINTER = b"\xc0\x0c"  # the question's name, at offset 12 of every message

# Labels for metrics and logs: types outside TYPE_NAMES count as "other".
TYPE_NAMES = {T_A: "A", T_NS: "NS", T_CNAME: "CNAME", T_SOA: "SOA", T_PTR: "PTR",
              T_MX: "MX", T_TXT: "TXT", T_AAAA: "AAAA", T_SRV: "SRV", T_NAPTR: "NAPTR",
              T_SVCB: "SVCB", T_HTTPS: "HTTPS", T_ANY: "ANY"}
RCODE_NAMES = {RCODE_NOERROR: "NOERROR", RCODE_FORMERR: "FORMERR",
               RCODE_SERVFAIL: "SERVFAIL", RCODE_NXDOMAIN: "NXDOMAIN",
               RCODE_NOTIMP: "NOTIMP", RCODE_REFUSED: "REFUSED"}
