"""The explain record: why a name answers what it answers (``dig NAME CH TXT``).

Built on demand (a debugging query, not the hot path) from the compiler's latest decision
and the store's sync state, as short ``key=value`` strings that read well in dig. A name
the resolver roles forward is explained by where it went and what the cache holds
(``forwarded``); the forwarder role appends the cluster resolver's own record.
"""

from __future__ import annotations

import time

from mcdns.answers.compiler import Compiler
from mcdns.answers.health import Decision


def explain(compiler: Compiler, qname: str) -> list[str]:
    """TXT strings explaining the answer for ``qname`` (any name in a served zone)."""
    key = compiler.service_of(qname)
    out = [f"name={qname.rstrip('.')}."]
    if key is None:
        out.append("kind=not a service name (zone apex, namespace, pod or other record)")
    else:
        d = compiler.decisions.get(key)
        if d is None:
            out.append(f"service={key[0]}/{key[1]} not found: no Service and no ServiceImport")
        else:
            out += _decision(d)
            out.append(_failback(d, compiler.failbacks.pending(key)))
    out += _state(compiler)
    return [s[i:i + 255] for s in out for i in range(0, len(s), 255)]


def _decision(d: Decision) -> list[str]:
    out = [f"service={d.namespace}/{d.name} policy={d.policy} min_ready={d.min_ready}",
           f"decision={d.choice} degraded={str(d.degraded).lower()}",
           f"reason={d.reason}"]
    if d.service is None:
        out.append("local=absent")
    else:
        s = d.service
        ips = ",".join(s.cluster_ips) or s.external_name or "-"
        out.append(f"local=present type={s.type} ips={ips} ready={d.local_ready} "
                   f"slices={len(d.local_slices)}")
    if d.imp is None:
        out.append("import=absent")
    else:
        r = d.remote
        by_cluster = ",".join(f"{c}:{n}" for c, n in r.ready_by_cluster) or "unknown"
        via = f" from={r.via}" if r.via else ""
        ready = "" if r.condition_ready else " condition=Ready=False"
        out.append(f"import=present type={d.imp.type} ips={','.join(r.ips) or '-'}{via}"
                   f"{ready} ready_by_cluster={by_cluster} own_slices={len(r.own)}")
        if r.tier or r.clusterset_tier:
            out.append(f"tier={','.join(r.tier) or 'all'} "
                       f"clusterset_tier={','.join(r.clusterset_tier) or 'all'}")
    return out


def _failback(d: Decision, pending: float | None) -> str:
    """The failback rule in force, and the hold-down's progress when one runs."""
    rule = f"failback_ready={d.failback_ready} failback_delay={d.failback_delay:g}s"
    if pending is None:
        return f"failback=none {rule}"
    return (f"failback=pending local healthy for {pending:.1f} s of "
            f"{d.failback_delay:g} s {rule}")


def _state(compiler: Compiler) -> list[str]:
    store = compiler.store
    now = time.time()
    age = f"{now - store.last_change:.1f}s" if store.last_change else "never"
    contact = f"{now - store.last_contact:.1f}s" if store.last_contact else "never"
    pending = ",".join(k for k, v in store.synced_sources.items() if not v) or "none"
    return [f"ttl={compiler.cfg.ttl} generation={store.generation} "
            f"cluster_id={compiler.cluster_id or '-'}",
            f"synced={str(store.synced).lower()} unsynced={pending} "
            f"last_change_age={age} last_contact_age={contact}"]


def forwarded(qname: str, cluster: bool, upstreams: list[str],
              cached: tuple[str, str, float] | None) -> list[str]:
    """TXT strings for a name mcdns forwards: to whom (the cluster resolver, for the
    cluster zones in the forwarder role; else the upstreams), and the cached A answer as
    (the upstream that gave it, its rcode, seconds left), None when none is cached."""
    to = (f"the cluster resolver (cluster_upstreams {','.join(upstreams)}), cached for at "
          "most its TTL, never served stale" if cluster
          else f"upstreams ({','.join(upstreams)}) through the cache")
    out = [f"name={qname.rstrip('.')}.", f"forwarded=to {to}"]
    if cached is None or cached[2] <= 0:
        out.append("cached=no: the next query is forwarded")
    else:
        source, rcode, left = cached
        out.append(f"cached=yes from={source or '-'} rcode={rcode} ttl_left={left:.1f}s")
    return [s[i:i + 255] for s in out for i in range(0, len(s), 255)]
