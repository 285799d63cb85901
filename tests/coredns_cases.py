# ruff: noqa: E501
"""CoreDNS-parity cases for the cluster zone, served from tests/data/coredns_state.yaml.

Why this exists: mcdns promises that, with no ServiceImports, every answer in
``cluster.local`` equals CoreDNS's ``kubernetes`` plugin with ``pods insecure`` and
``ttl 5``. These cases are CoreDNS's own expectations (plugin/kubernetes/handler_test.go,
handler_case_test.go, handler_pod_insecure_test.go, kubernetes_apex_test.go, and the
rules of kubernetes.go / parse.go / reverse.go / plugin/backend_lookup.go) written
against the same fake cluster, translated to a kubectl state file.

Each case is ``(qname, qtype, rcode, answer, ns, extra)``:
- qtype and rcode are mnemonics (``"A"``, ``"NXDOMAIN"``) for dns.rdatatype/dns.rcode;
- answer/ns/extra are zone-text RRs; compare them as unordered sets (CoreDNS's tests
  sort every section before comparing);
- ``SERIAL`` in an SOA stands for the zone's serial, which tests must not compare
  (use ``rrset()`` with the serial the server answered).

Three lists, all in ``CASES``:
- ``HANDLER_CASES``: the expectations of CoreDNS's handler tests, unchanged except that
  every SOA is mcdns's documented form (CoreDNS's tests compare only the SOA mname and TTL).
- ``DERIVED_CASES``: what CoreDNS's code answers for names its tests do not query
  (endpoint names of ClusterIP services, readiness, PTR, SRV variants, pod names ...).
- ``QUIRK_CASES``: CoreDNS answers that differ from strict DNS (empty non-terminals
  answered NXDOMAIN, TXT/SOA never NXDOMAIN, ...). Parity means matching them; keep them
  separate so a deliberate deviation is a one-line change.

Reverse zones: PTR cases assume mcdns serves ``in-addr.arpa.`` and ``ip6.arpa.`` (the
kubeadm Corefile's ``kubernetes cluster.local in-addr.arpa ip6.arpa``); negative answers
there carry that zone's SOA. mcdns claims reverse zones only for its ``service_cidrs`` and
``pod_cidrs``, so the fixture gives it ``0.0.0.0/0`` and ``::/0``, which CoreDNS too
expands to exactly those two zones. The apex NS case and ``ns.dns`` assume the server answers on
127.0.0.1 (CoreDNS puts the address it received the query on there, see ns.go).

Skipped handler-test cases (mcdns has no such feature, or the case needs an upstream):
- ``external.testns.svc.cluster.local. A`` "CNAME External Truncated Lookup": needs an
  upstream resolver for the out-of-zone target (CoreDNS appends the upstream's A
  records and its TC bit after the CNAME; with a failing upstream it answers NODATA
  without the CNAME).
- notSyncedTestCases (SERVFAIL before the first sync): needs an unsynced server (test_kube_dns covers it).
- TestServeNamespaceDNS runs with no ``namespaces`` filter; its one NXDOMAIN case is
  kept. TestServeDNS uses ``namespaces testns``; mcdns's namespace filter is for the
  resolver role only (it forwards the other namespaces' names), and these cases run the
  stub role unfiltered, so kube-system/kubedns and unexposedns/svc1 are visible here (no
  case relies on hiding).
- wildcard (``*``/``any``) queries of older handler tests: removed in CoreDNS 1.9.
- handler_pod_verified_test.go (``pods verified``), handler_pod_disabled_test.go,
  handler_ignore_emptyservice_test.go (``ignore empty_service``), multicluster,
  ``endpoint_pod_names``, ``fallthrough``, several zones, autopath, external plugin,
  zone transfer: features mcdns does not have.
- ``10.0.0.1`` PTR: svc1 and svcempty share that ClusterIP in the fixture; CoreDNS
  answers with whichever Service its index returns first (not deterministic).
"""

from __future__ import annotations

import dns.rrset

Case = tuple[str, str, str, list[str], list[str], list[str]]

ZONE = "cluster.local."
SOA = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5"
SOA_V4 = "in-addr.arpa. 5 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. SERIAL 7200 1800 86400 5"
# handler_case_test.go: the zone keeps the query's spelling in owner, mname and rname.
SOA_MIXED = "ClUsTeR.lOcAl. 5 IN SOA ns.dns.ClUsTeR.lOcAl. hostmaster.ClUsTeR.lOcAl. SERIAL 7200 1800 86400 5"

HDLS1_SRV_TARGETS = [
    "0 16 80 172-0-0-2.hdls1.testns.svc.cluster.local.",
    "0 16 80 172-0-0-3.hdls1.testns.svc.cluster.local.",
    "0 16 80 5678-abcd--1.hdls1.testns.svc.cluster.local.",
    "0 16 80 5678-abcd--2.hdls1.testns.svc.cluster.local.",
    "0 16 80 dup-name.hdls1.testns.svc.cluster.local.",
]
HDLS1_SRV_EXTRA = [
    "172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
    "172-0-0-3.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3",
    "5678-abcd--1.hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::1",
    "5678-abcd--2.hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::2",
    "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.4",
    "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.5",
]
HDLS1_A = [
    "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
    "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3",
    "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.4",
    "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.5",
]


def _srv(owner: str, rdatas: list[str]) -> list[str]:
    return [f"{owner} 5 IN SRV {r}" for r in rdatas]


HANDLER_CASES: list[Case] = [
    # --- handler_test.go dnsTestCases (TestServeDNS), in their order -----------------
    ("svc1.testns.svc.cluster.local.", "A", "NOERROR",
     ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"], [], []),
    ("svcempty.testns.svc.cluster.local.", "A", "NOERROR",  # ClusterIP, slice without endpoints
     ["svcempty.testns.svc.cluster.local. 5 IN A 10.0.0.1"], [], []),
    ("svc1.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local."], [],
     ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
    ("svcempty.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["svcempty.testns.svc.cluster.local. 5 IN SRV 0 100 80 svcempty.testns.svc.cluster.local."], [],
     ["svcempty.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
    ("svc6.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["svc6.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc6.testns.svc.cluster.local."], [],
     ["svc6.testns.svc.cluster.local. 5 IN AAAA 1234:abcd::1"]),
    ("_http._tcp.svc1.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["_http._tcp.svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local."], [],
     ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
    ("_http._tcp.svcempty.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["_http._tcp.svcempty.testns.svc.cluster.local. 5 IN SRV 0 100 80 svcempty.testns.svc.cluster.local."], [],
     ["svcempty.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
    # headless: one A per ready IPv4 endpoint (172.0.0.6 is not ready)
    ("hdls1.testns.svc.cluster.local.", "A", "NOERROR", HDLS1_A, [], []),
    ("hdlsprtls.testns.svc.cluster.local.", "A", "NOERROR",  # headless, no ports
     ["hdlsprtls.testns.svc.cluster.local. 5 IN A 172.0.0.20"], [], []),
    ("172-0-0-20.hdlsprtls.testns.svc.cluster.local.", "A", "NOERROR",
     ["172-0-0-20.hdlsprtls.testns.svc.cluster.local. 5 IN A 172.0.0.20"], [], []),
    ("172-0-0-2.hdls1.testns.svc.cluster.local.", "A", "NOERROR",
     ["172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2"], [], []),
    ("172-0-0-3.hdls1.testns.svc.cluster.local.", "A", "NOERROR",
     ["172-0-0-3.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3"], [], []),
    ("dup-name.hdls1.testns.svc.cluster.local.", "A", "NOERROR",
     ["dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.4",
      "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.5"], [], []),
    # 6 endpoint services, weight floor(100*100/600)=16; dup-name SRV deduplicated, its
    # two addresses both in the additional section
    ("_http._tcp.hdls1.testns.svc.cluster.local.", "SRV", "NOERROR",
     _srv("_http._tcp.hdls1.testns.svc.cluster.local.", HDLS1_SRV_TARGETS), [], HDLS1_SRV_EXTRA),
    ("5678-abcd--2.hdls1.testns.svc.cluster.local.", "AAAA", "NOERROR",
     ["5678-abcd--2.hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::2"], [], []),
    ("external.testns.svc.cluster.local.", "CNAME", "NOERROR",
     ["external.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."], [], []),
    # ExternalName pointing into the zone: CNAME, then the target's records (CNAME first)
    ("external-to-service.testns.svc.cluster.local.", "A", "NOERROR",
     ["external-to-service.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local.",
      "svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"], [], []),
    ("svc1.testns.svc.cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
    ("svc0.testns.svc.cluster.local.", "AAAA", "NXDOMAIN", [], [SOA], []),
    ("svc0.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("svc0.svc-nons.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # TTL 28800 is hard-coded in CoreDNS (kubernetes.go Services, TypeTXT), not `ttl`
    ("dns-version.cluster.local.", "TXT", "NOERROR",
     ['dns-version.cluster.local. 28800 IN TXT "1.1.0"'], [], []),
    ("bogusendpoint.hdls1.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("bogusendpoint.svc0.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("svc6.testns.svc.cluster.local.", "AAAA", "NOERROR",
     ["svc6.testns.svc.cluster.local. 5 IN AAAA 1234:abcd::1"], [], []),
    ("_http._tcp.svc6.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["_http._tcp.svc6.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc6.testns.svc.cluster.local."], [],
     ["svc6.testns.svc.cluster.local. 5 IN AAAA 1234:abcd::1"]),
    ("hdls1.testns.svc.cluster.local.", "AAAA", "NOERROR",
     ["hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::1",
      "hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::2"], [], []),
    ("5678-abcd--1.hdls1.testns.svc.cluster.local.", "AAAA", "NOERROR",
     ["5678-abcd--1.hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::1"], [], []),
    ("svc.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("pod.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("testns.svc.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("svc.cluster.local.", "NS", "NOERROR", [], [SOA], []),
    ("testns.svc.cluster.local.", "NS", "NOERROR", [], [SOA], []),
    ("foo.cluster.local.", "NS", "NXDOMAIN", [], [SOA], []),
    ("foo.svc.cluster.local.", "NS", "NXDOMAIN", [], [SOA], []),
    ("svc-dual-stack.testns.svc.cluster.local.", "A", "NOERROR",
     ["svc-dual-stack.testns.svc.cluster.local. 5 IN A 10.0.0.3"], [], []),
    ("svc-dual-stack.testns.svc.cluster.local.", "AAAA", "NOERROR",
     ["svc-dual-stack.testns.svc.cluster.local. 5 IN AAAA 10::3"], [], []),
    # one service per ClusterIP: weight 100*100/200 = 50; the two SRVs have the same
    # target and port, so one is kept; both addresses go to the additional section
    ("svc-dual-stack.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["svc-dual-stack.testns.svc.cluster.local. 5 IN SRV 0 50 80 svc-dual-stack.testns.svc.cluster.local."], [],
     ["svc-dual-stack.testns.svc.cluster.local. 5 IN A 10.0.0.3",
      "svc-dual-stack.testns.svc.cluster.local. 5 IN AAAA 10::3"]),
    ("svc1.testns.svc.cluster.local.", "SOA", "NOERROR", [], [SOA], []),
    ("endpoint.external.testns.svc.cluster.local.", "CNAME", "NXDOMAIN", [], [SOA], []),
    # --- handler_test.go nsTestCases: namespace that does not exist ------------------
    ("svc1.nsnoexist.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # --- handler_case_test.go: case-insensitive match, the query's spelling kept -------
    ("not-a-service.testns.svc.ClUsTeR.lOcAl.", "A", "NXDOMAIN", [], [SOA_MIXED], []),
    ("SvC1.TeStNs.SvC.cLuStEr.LoCaL.", "A", "NOERROR",
     ["SvC1.TeStNs.SvC.cLuStEr.LoCaL. 5 IN A 10.0.0.1"], [], []),
    ("_HtTp._TcP.sVc1.TeStNs.SvC.cLuStEr.LoCaL.", "SRV", "NOERROR",
     ["_HtTp._TcP.sVc1.TeStNs.SvC.cLuStEr.LoCaL. 5 IN SRV 0 100 80 svc1.testns.svc.cLuStEr.LoCaL."], [],
     ["svc1.testns.svc.cLuStEr.LoCaL. 5 IN A 10.0.0.1"]),
    ("Cluster.local.", "SOA", "NOERROR",
     ["Cluster.local. 5 IN SOA ns.dns.Cluster.local. hostmaster.Cluster.local. SERIAL 7200 1800 86400 5"], [], []),
    # --- handler_pod_insecure_test.go (pods insecure) -----------------------------------
    ("10-240-0-1.podns.pod.cluster.local.", "A", "NOERROR",
     ["10-240-0-1.podns.pod.cluster.local. 5 IN A 10.240.0.1"], [], []),
    ("172-0-0-2.podns.pod.cluster.local.", "A", "NOERROR",
     ["172-0-0-2.podns.pod.cluster.local. 5 IN A 172.0.0.2"], [], []),
    ("blah.podns.pod.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("blah.podns.pod.cluster.local.", "AAAA", "NXDOMAIN", [], [SOA], []),
    ("blah.podns.pod.cluster.local.", "HINFO", "NXDOMAIN", [], [SOA], []),
    ("blah.pod-nons.pod.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("podns.pod.cluster.local.", "A", "NOERROR", [], [SOA], []),
    # --- kubernetes_apex_test.go ----------------------------------------------------------
    ("cluster.local.", "SOA", "NOERROR", [SOA], [], []),
    ("cluster.local.", "HINFO", "NOERROR", [], [SOA], []),
    ("cluster.local.", "NS", "NOERROR",
     ["cluster.local. 5 IN NS ns.dns.cluster.local."], [],
     ["ns.dns.cluster.local. 5 IN A 127.0.0.1"]),
    ("cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
    ("cluster.local.", "SRV", "NOERROR", [], [SOA], []),
]

DERIVED_CASES: list[Case] = [
    # ClusterIP services have endpoint names too (kubernetes_test.go TestServices)
    ("ep1a.svc1.testns.svc.cluster.local.", "A", "NOERROR",
     ["ep1a.svc1.testns.svc.cluster.local. 5 IN A 172.0.0.1"], [], []),
    ("ep1a.svc1.testns.svc.cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
    ("ep1a.svc1.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["ep1a.svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 ep1a.svc1.testns.svc.cluster.local."], [],
     ["ep1a.svc1.testns.svc.cluster.local. 5 IN A 172.0.0.1"]),
    ("172-0-0-1.svc1.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),  # has a hostname
    # headless SRV without _port._proto: every ready endpoint x every port
    ("hdls1.testns.svc.cluster.local.", "SRV", "NOERROR",
     _srv("hdls1.testns.svc.cluster.local.", HDLS1_SRV_TARGETS), [], HDLS1_SRV_EXTRA),
    ("172-0-0-2.hdls1.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN SRV 0 100 80 172-0-0-2.hdls1.testns.svc.cluster.local."], [],
     ["172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2"]),
    # two endpoints share the hostname: weight 50 each, one SRV after dedup, two A
    ("dup-name.hdls1.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["dup-name.hdls1.testns.svc.cluster.local. 5 IN SRV 0 50 80 dup-name.hdls1.testns.svc.cluster.local."], [],
     ["dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.4",
      "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.5"]),
    ("172-0-0-2.hdls1.testns.svc.cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
    # portless headless: names exist, no SRV (port -1 sentinel skipped); named port: none
    ("hdlsprtls.testns.svc.cluster.local.", "SRV", "NOERROR", [], [SOA], []),
    ("_http._tcp.hdlsprtls.testns.svc.cluster.local.", "SRV", "NXDOMAIN", [], [SOA], []),
    # port / protocol that the service does not have; too many labels
    ("_https._tcp.svc1.testns.svc.cluster.local.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("_http._udp.svc1.testns.svc.cluster.local.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("a.b.svc1.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("x._http._tcp.svc1.testns.svc.cluster.local.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("svc1.testns.svc.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # readiness: only endpoints with conditions.ready true or absent
    ("172-0-0-6.hdls1.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("hdlsnotready.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("hdlsnotready.testns.svc.cluster.local.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("nr.hdlsnotready.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # other types at existing / missing names: NODATA / NXDOMAIN
    ("svc1.testns.svc.cluster.local.", "CNAME", "NOERROR", [], [SOA], []),
    ("svc1.testns.svc.cluster.local.", "NS", "NOERROR", [], [SOA], []),
    ("svc1.testns.svc.cluster.local.", "HINFO", "NOERROR", [], [SOA], []),
    ("svc1.testns.svc.cluster.local.", "MX", "NOERROR", [], [SOA], []),
    ("svc0.testns.svc.cluster.local.", "HINFO", "NXDOMAIN", [], [SOA], []),
    ("svc0.testns.svc.cluster.local.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("svc-nons.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("testns.svc.cluster.local.", "SRV", "NOERROR", [], [SOA], []),
    ("foo.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # ExternalName: CNAME for CNAME queries; SRV/TXT answer NODATA
    ("external-to-service.testns.svc.cluster.local.", "CNAME", "NOERROR",
     ["external-to-service.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local."], [], []),
    ("external.testns.svc.cluster.local.", "SRV", "NOERROR", [], [SOA], []),
    ("_http._tcp.external.testns.svc.cluster.local.", "SRV", "NOERROR", [], [SOA], []),
    ("external.testns.svc.cluster.local.", "TXT", "NOERROR", [], [SOA], []),
    # no namespace filter in mcdns: every namespace is visible
    ("kubedns.kube-system.svc.cluster.local.", "A", "NOERROR",
     ["kubedns.kube-system.svc.cluster.local. 5 IN A 10.0.0.10"], [], []),
    ("_dns._udp.kubedns.kube-system.svc.cluster.local.", "SRV", "NOERROR",
     ["_dns._udp.kubedns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 kubedns.kube-system.svc.cluster.local."], [],
     ["kubedns.kube-system.svc.cluster.local. 5 IN A 10.0.0.10"]),
    ("svc1.unexposedns.svc.cluster.local.", "A", "NOERROR",
     ["svc1.unexposedns.svc.cluster.local. 5 IN A 10.0.0.2"], [], []),
    # pods insecure: IPv6 pod names, a namespace that does not exist
    ("5678-abcd--1.podns.pod.cluster.local.", "AAAA", "NOERROR",
     ["5678-abcd--1.podns.pod.cluster.local. 5 IN AAAA 5678:abcd::1"], [], []),
    ("5678-abcd--1.podns.pod.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("10-240-0-1.podns.pod.cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
    ("10-240-0-1.nsnoexist.pod.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("nsnoexist.pod.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # ns.dns.<zone>: the server's own address (kubernetes_test.go TestServicesAuthority)
    ("ns.dns.cluster.local.", "A", "NOERROR",
     ["ns.dns.cluster.local. 5 IN A 127.0.0.1"], [], []),
    ("ns.dns.cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
    # PTR (reverse.go; reverse_test.go rules): ClusterIP -> service name, else one PTR per
    # (service, ready endpoint) -> <hostname or dashed IP>.<svc>.<ns>.svc.<zone>
    ("3.0.0.10.in-addr.arpa.", "PTR", "NOERROR",
     ["3.0.0.10.in-addr.arpa. 5 IN PTR svc-dual-stack.testns.svc.cluster.local."], [], []),
    ("3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.ip6.arpa.", "PTR", "NOERROR",
     ["3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.ip6.arpa. 5 IN PTR svc-dual-stack.testns.svc.cluster.local."], [], []),
    ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa.", "PTR", "NOERROR",
     ["1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa. 5 IN PTR svc6.testns.svc.cluster.local."], [], []),
    ("10.0.0.10.in-addr.arpa.", "PTR", "NOERROR",
     ["10.0.0.10.in-addr.arpa. 5 IN PTR kubedns.kube-system.svc.cluster.local."], [], []),
    ("1.0.0.172.in-addr.arpa.", "PTR", "NOERROR",
     ["1.0.0.172.in-addr.arpa. 5 IN PTR ep1a.svc1.testns.svc.cluster.local."], [], []),
    ("2.0.0.172.in-addr.arpa.", "PTR", "NOERROR",
     ["2.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-2.hdls1.testns.svc.cluster.local."], [], []),
    ("4.0.0.172.in-addr.arpa.", "PTR", "NOERROR",
     ["4.0.0.172.in-addr.arpa. 5 IN PTR dup-name.hdls1.testns.svc.cluster.local."], [], []),
    ("20.0.0.172.in-addr.arpa.", "PTR", "NOERROR",
     ["20.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-20.hdlsprtls.testns.svc.cluster.local."], [], []),
    ("100.0.0.172.in-addr.arpa.", "PTR", "NOERROR",
     ["100.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-100.kubedns.kube-system.svc.cluster.local."], [], []),
    ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.8.7.6.5.ip6.arpa.", "PTR", "NOERROR",
     ["1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.8.7.6.5.ip6.arpa. 5 IN PTR 5678-abcd--1.hdls1.testns.svc.cluster.local."], [], []),
    # not-ready endpoint and unknown IPs: NXDOMAIN with the reverse zone's SOA
    ("6.0.0.172.in-addr.arpa.", "PTR", "NXDOMAIN", [], [SOA_V4], []),
    ("30.0.0.172.in-addr.arpa.", "PTR", "NXDOMAIN", [], [SOA_V4], []),
    ("101.0.0.10.in-addr.arpa.", "PTR", "NXDOMAIN", [], [SOA_V4], []),
    ("svc1.testns.svc.0.10.in-addr.arpa.", "A", "NXDOMAIN", [], [SOA_V4], []),
    # PTR in the forward zone (reverse_test.go)
    ("svc1.testns.svc.cluster.local.", "PTR", "NOERROR", [], [SOA], []),
    ("100.0.0.10.cluster.local.", "PTR", "NXDOMAIN", [], [SOA], []),
    ("example.org.cluster.local.", "PTR", "NXDOMAIN", [], [SOA], []),
]

QUIRK_CASES: list[Case] = [
    # empty non-terminals answer NXDOMAIN, not NODATA (parse.go: a lone label left of the
    # service is an endpoint name; "dns" is neither svc nor pod)
    ("_tcp.svc1.testns.svc.cluster.local.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("dns.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # dns-version exists only for TXT: other types say the name does not exist
    ("dns-version.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # TXT is never NXDOMAIN (Services returns nothing for TXT unless dns-version)
    ("svc0.testns.svc.cluster.local.", "TXT", "NOERROR", [], [SOA], []),
    # SOA below the apex is never NXDOMAIN (handler.go only answers SOA at the apex)
    ("svc0.testns.svc.cluster.local.", "SOA", "NOERROR", [], [SOA], []),
    # _port._proto names answer address queries like the service name
    ("_http._tcp.svc1.testns.svc.cluster.local.", "A", "NOERROR",
     ["_http._tcp.svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"], [], []),
    # the underscores are optional
    ("http.tcp.svc1.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["http.tcp.svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local."], [],
     ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
    # pod names ignore any labels left of them (findPods reads only <ip>.<ns>)
    ("a.10-240-0-1.podns.pod.cluster.local.", "A", "NOERROR",
     ["a.10-240-0-1.podns.pod.cluster.local. 5 IN A 10.240.0.1"], [], []),
    # in-zone ExternalName target without that type: the CNAME is dropped too (NODATA)
    ("external-to-service.testns.svc.cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
]

CASES: list[Case] = HANDLER_CASES + DERIVED_CASES + QUIRK_CASES


def rrset(text: str, serial: int = 0) -> dns.rrset.RRset:
    """One zone-text RR of a case as a dnspython RRset (SERIAL replaced by ``serial``)."""
    owner, ttl, rdclass, rdtype, rdata = text.replace("SERIAL", str(serial)).split(None, 4)
    return dns.rrset.from_text(owner, int(ttl), rdclass, rdtype, rdata)
