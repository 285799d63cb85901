"""The compiler: store changes in, recompiled answers out.

Subscribed to the store, it recompiles exactly the services a commit touched (decision,
records, table), so the query path only ever looks answers up. It also keeps each
service's latest decision, which the explain record and the metrics read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections import Counter
from collections.abc import Callable

from mcdns.answers import rdata, records
from mcdns.answers.failback import Failbacks
from mcdns.answers.health import IMPORT, LOCAL, Decision, decide
from mcdns.answers.owners import Owner
from mcdns.answers.slots import TAG_DEGRADED, TAG_IMPORT, TAG_LOCAL, TAG_NONE
from mcdns.answers.switch import Switch, switch_of
from mcdns.answers.table import AnswerTable
from mcdns.answers.zone import cidr_zones
from mcdns.config import Config
from mcdns.histogram import PROGRAMMING_BOUNDS, Histogram
from mcdns.objects.model import Key
from mcdns.objects.shapes import CLUSTER_ID_PROPERTY
from mcdns.proto import T_TXT
from mcdns.state.store import Changes, Store

log = logging.getLogger("mcdns.answers")

CLUSTER_DNS_VERSION = "1.1.0"
CLUSTERSET_DNS_VERSION = "1.0.0"
RECHECK_TICK = 0.025  # seconds: hold-down ends are rounded up to this

def _tag(d: Decision) -> int:
    """The metrics tag of a service's answers: local, import or degraded."""
    if d.degraded:
        return TAG_DEGRADED
    return TAG_IMPORT if d.choice == IMPORT else TAG_LOCAL if d.choice == LOCAL else TAG_NONE


def _label(d: Decision) -> str:
    return "degraded" if d.degraded else d.choice




def claimed_reverse_zones(cfg: Config) -> list[str]:
    """The reverse zones mcdns is authoritative for: those of ``service_cidrs`` and
    ``pod_cidrs``, and in the stub role the deprecated ``reverse_zones``, claimed whole
    as before. None with a ``namespaces`` filter: mcdns then does not know every address
    in the networks, and must not say NXDOMAIN for the others'."""
    if cfg.namespaces:
        return []
    zones = [z for cidr in (*cfg.service_cidrs, *cfg.pod_cidrs) for z in cidr_zones(cidr)]
    if cfg.reverse_zones and cfg.role == "stub":
        zones += cfg.reverse_zones
    return list(dict.fromkeys(zones))


class Compiler:
    """Keeps ``table`` equal to what the store's data says, one commit at a time."""

    def __init__(self, cfg: Config, store: Store,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` times failback hold-downs (monotonic seconds)."""
        self.cfg = cfg
        self.store = store
        self.zones = records.Zones(cfg.zone, cfg.clusterset_zone)
        self.table = AnswerTable((cfg.zone, cfg.clusterset_zone, *claimed_reverse_zones(cfg)),
                                 cfg.ttl, owner_of=self._owner_of, records_of=self._records_of,
                                 tags_of=self._tags_of, ptr_zone=cfg.zone,
                                 unclaimed=("in-addr.arpa", "ip6.arpa"))
        if cfg.reverse_zones:
            log.warning("config key 'reverse_zones' is deprecated: set service_cidrs and "
                        "pod_cidrs instead; %s", "its zones are claimed whole, NXDOMAIN for "
                        "every address mcdns does not know" if cfg.role == "stub" else
                        "the resolver role ignores it")
        self.decisions: dict[Key, Decision] = {}
        self.changed_at: dict[Key, float] = {}  # wall time each answer took its side (status)
        self.programming = Histogram(PROGRAMMING_BOUNDS)  # watch event -> changed answer
        self._switch_listeners: list[Callable[[Switch], None]] = []
        self.switches: Counter[str] = Counter()  # by direction (switch.DIRECTIONS)
        self.failbacks = Failbacks(clock)
        self._rechecks: dict[Key, asyncio.TimerHandle] = {}
        self._due: set[Key] = set()  # hold-downs ended, compiled together (one flush)
        self._commit_time: float | None = None  # the clock at the commit being compiled
        self._static()
        self._namespaces()
        self.table.flush()
        store.subscribe(self.apply)

    def _static(self) -> None:
        cfg = self.cfg
        self.table.set_owner("static:dns-version", {
            f"dns-version.{cfg.zone}.": {T_TXT: [rdata.txt(CLUSTER_DNS_VERSION)]},
            f"dns-version.{cfg.clusterset_zone}.": {T_TXT: [rdata.txt(CLUSTERSET_DNS_VERSION)]},
        })
        self._nameserver_addresses()

    def reconfigure(self, cfg: Config) -> None:
        """Apply a reloaded config (TTL, policy, min_ready, pods): recompile everything."""
        self.cfg = cfg
        self.table.set_ttl(cfg.ttl)
        self._static()
        self.recompile_all()

    def _nameserver_addresses(self) -> None:
        """``ns.dns.<zone>`` (the apex NS target) resolves to the specific IPs mcdns
        listens on, as CoreDNS answers with its own address; wildcard binds give none."""
        rs = records.RecordSet()
        for zone in (self.cfg.zone, self.cfg.clusterset_zone):
            for hp in self.cfg.listen:
                try:
                    ip = ipaddress.ip_address(hp.host)
                except ValueError:
                    continue
                if not ip.is_unspecified:
                    rs.address(f"ns.dns.{zone}.", str(ip), ptr=False)
        self.table.set_owner("static:ns", rs.finish())

    def service_of(self, name: str) -> Key | None:
        """(namespace, service) of a name ``...<svc>.<ns>.svc.<zone>`` in either zone."""
        labels = name.lower().rstrip(".").split(".")
        return (records.service_key(labels, self.cfg.zone)
                or records.service_key(labels, self.cfg.clusterset_zone))

    def _owner_of(self, wire: bytes) -> Key | None:
        """The service owning a name below ``<svc>.<ns>.svc.<zone>`` (either zone).

        A service's table owner is its key, (namespace, name): the decision's own tuple,
        so owning costs no object (the static owners are strings)."""
        key = self.service_of(rdata.name_text(wire))
        return key if key is not None and key in self.decisions else None

    def _records_of(self, owner: Owner) -> records.Records:
        """A service's records as last compiled (its last decision holds the inputs);
        static owners (strings) keep every name compiled and are never asked."""
        if isinstance(owner, str):
            return {}
        d = self.decisions.get(owner)
        return records.build(d, self.zones) if d is not None else {}

    def _tags_of(self, owner: Owner) -> dict[str, int]:
        """A service's metrics tags as last compiled: its cluster name counts as its
        decision (local, import, degraded)."""
        if isinstance(owner, str):
            return {}
        d = self.decisions.get(owner)
        return {} if d is None else {f"{d.name}.{d.namespace}.svc.{self.cfg.zone}.": _tag(d)}

    def on_switch(self, listener: Callable[[Switch], None]) -> None:
        """Call ``listener`` with every switch of a service's answer (it must only queue
        work: it runs on the compile path)."""
        self._switch_listeners.append(listener)

    def service_states(self) -> dict[str, int]:
        """Services by the state of their answer: healthy (local), fallback (a local
        Service answered by its import), degraded (the chosen answer has no ready
        backend). Imports without a local Service count as neither."""
        states = {"healthy": 0, "fallback": 0, "degraded": 0}
        for d in list(self.decisions.values()):
            if d.degraded:
                states["degraded"] += 1
            elif d.choice == IMPORT and d.service is not None:
                states["fallback"] += 1
            elif d.choice == LOCAL:
                states["healthy"] += 1
        return states

    @property
    def cluster_id(self) -> str:
        return self.cfg.cluster_id or self.store.cluster_properties.get(CLUSTER_ID_PROPERTY, "")

    def apply(self, changes: Changes) -> None:
        self._commit_time = self.failbacks.clock()
        try:
            self._apply(changes)
        finally:
            self._commit_time = None

    def _apply(self, changes: Changes) -> None:
        if changes.cluster_id:  # which slices are this cluster's own: every decision
            self.recompile_all()
        else:
            for key in sorted(changes.services):
                self.compile_service(key)
            if changes.namespaces:
                self._namespaces()
            self.table.flush()
        if changes.event_time is not None:
            self.programming.observe(max(0.0, time.time() - changes.event_time))

    def recompile_all(self) -> None:
        """Rebuild every service (used when the config changes)."""
        for key in sorted(self.store.all_service_keys() | set(self.decisions)):
            self.compile_service(key)
        self._namespaces()
        self.table.flush()

    def compile_service(self, key: Key) -> None:
        ns, name = key
        st = self.store
        old = self.decisions.get(key)
        # A ServiceImport (a CRD) may have a dotted name, and a slice's service label
        # can hold one: neither is one label of a DNS name, so neither gets names (a dot
        # would let it answer for another service's names). Nor does a service outside
        # the namespaces filter (a state file holds every namespace; their names are
        # forwarded, see the handler).
        if ((key not in st.services and key not in st.imports) or "." in name
                or (self.cfg.namespaces and ns not in self.cfg.namespaces)):
            self.decisions.pop(key, None)
            self.changed_at.pop(key, None)
            self.failbacks.forget(key)
            self._schedule(key, None)
            self.table.set_owner(key, {})
            self.table.set_bare_names(key, ())
            return
        cfg = self.cfg
        want = decide(st, ns, name, cfg.policy, cfg.min_ready, self.cluster_id,
                      cfg.cluster_preference, cfg.failback_ready, cfg.failback_delay)
        d, recheck = self.failbacks.apply(key, want, old, self._commit_time)
        self._schedule(key, recheck)
        self.decisions[key] = d
        if old is None or (old.choice, old.degraded) != (d.choice, d.degraded):
            self.changed_at[key] = time.time()
        base = f"{name}.{ns}.svc.{self.cfg.zone}."
        cbase = f"{name}.{ns}.svc.{self.cfg.clusterset_zone}."
        recs = records.build(d, self.zones)
        self.table.set_owner(key, recs, self._tags_of(key), hot=(base, cbase))
        self.table.set_bare_names(key, _existing(d, base, cbase, recs))
        if old is not None and (old.choice, old.degraded) != (d.choice, d.degraded):
            log.info("service %(namespace)s/%(service)s decision %(from)s -> %(to)s: "
                     "%(reason)s", {"namespace": ns, "service": name, "from": _label(old),
                                    "to": _label(d), "reason": d.reason})
        sw = switch_of(old, d, time.time())
        if sw is not None:
            self.switches[sw.direction] += 1
            for listener in self._switch_listeners:
                listener(sw)

    def _schedule(self, key: Key, at: float | None) -> None:
        """Compile ``key`` again at monotonic time ``at`` (a pending failback's end);
        None cancels. Needs a running event loop (the server's); without one, the next
        change to the service looks again."""
        handle = self._rechecks.pop(key, None)
        if handle is not None:
            handle.cancel()
        if at is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        # Deadlines rounded up to a 25 ms tick: services that came back in one commit end
        # their hold-downs in the same turn of the loop, compiled together (_recheck).
        at = math.ceil(at / RECHECK_TICK) * RECHECK_TICK
        delay = max(0.0, at - self.failbacks.clock())
        self._rechecks[key] = loop.call_later(delay, self._recheck, key)

    def _recheck(self, key: Key) -> None:
        """A hold-down ended: compile it with every other one that ends in this turn of
        the loop, then flush once (services that came back together end together)."""
        self._rechecks.pop(key, None)
        if not self._due:
            asyncio.get_running_loop().call_soon(self._compile_due)
        self._due.add(key)

    def _compile_due(self) -> None:
        due, self._due = self._due, set()
        for key in sorted(due):
            self.compile_service(key)
        self.table.flush()

    def close(self) -> None:
        """Cancel the pending hold-down timers (the server is stopping)."""
        for handle in self._rechecks.values():
            handle.cancel()
        self._rechecks.clear()
        self._due.clear()

    def _namespaces(self) -> None:
        z = self.cfg.zone
        names = [f"svc.{z}."]
        if self.cfg.pods != "disabled":
            names.append(f"pod.{z}.")
        for ns in self.store.namespaces:
            names.append(f"{ns}.svc.{z}.")
            if self.cfg.pods != "disabled":
                names.append(f"{ns}.pod.{z}.")
        names.append(f"svc.{self.cfg.clusterset_zone}.")
        # An existing namespace is NODATA in the clusterset zone too, imports or not (as
        # CoreDNS's multicluster support answers it).
        names += [f"{ns}.svc.{self.cfg.clusterset_zone}."
                  for ns in self.store.namespaces | {k[0] for k in self.store.imports}]
        self.table.set_bare_names("namespaces", names)


def _existing(d: Decision, base: str, cbase: str, recs: records.Records) -> list[str]:
    """Service names that exist with no address to give (NODATA, never NXDOMAIN): a
    ClusterIP Service's or ClusterSetIP import's name always exists; headless names
    follow CoreDNS and the MCS spec (no ready endpoint: NXDOMAIN)."""
    out = []
    if ((d.service is not None and d.service.type == "ClusterIP")
            or (d.imp is not None and d.imp.type == "ClusterSetIP")) and base not in recs:
        out.append(base)
    if d.imp is not None and d.imp.type == "ClusterSetIP" and cbase not in recs:
        out.append(cbase)
    return out
