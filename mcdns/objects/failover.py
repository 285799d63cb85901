"""The failover tuning a Service or ServiceImport can carry, and how its values read.

Three knobs decide how an answer moves between the local Service and its import, each a
config key (the default) and an annotation (per service; the Service's wins over the
import's): how long the local side must stay healthy before failing back, how many
ready local pods that takes, and which remote clusters answer first. The same parsers
read the config file and the annotations, so "10" and "10s" mean the same in both.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from mcdns.objects.names import is_dns1123_subdomain

FAILBACK_DELAY_ANNOTATION = "mcdns.io/failback-delay"
FAILBACK_READY_ANNOTATION = "mcdns.io/failback-ready"
CLUSTER_PREFERENCE_ANNOTATION = "mcdns.io/cluster-preference"
MAX_DELAY = 3600.0
ANY_CLUSTER = "*"
_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")


@dataclass(frozen=True, slots=True)
class Failover:
    """A Service's or ServiceImport's failover annotations (None: not set)."""

    failback_delay: float | None = None
    failback_ready: int | None = None
    cluster_preference: tuple[str, ...] | None = None


def parse_delay(raw: object) -> float:
    """Seconds from ``10``, ``2.5``, ``"10"`` or ``"10s"`` (0-3600); ValueError else."""
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a number of seconds")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        m = _SECONDS.match(str(raw))
        if m is None:
            raise ValueError(f"{raw!r} is not a number of seconds (\"10\" or \"10s\")")
        value = float(m.group(1))
    if not 0 <= value <= MAX_DELAY:
        raise ValueError(f"{raw!r} is out of range 0-{MAX_DELAY:g} seconds")
    return value


def parse_preference(raw: object) -> tuple[str, ...]:
    """Cluster tiers from ``"member3,member1,*"`` (or a list): cluster ids (DNS-1123
    subdomains, lower-cased) or ``*``, each once; ValueError else."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ValueError(f"{raw!r} is not a list of cluster ids")
    out: list[str] = []
    for item in items:
        text = str(item).strip().lower()
        if text != ANY_CLUSTER and not is_dns1123_subdomain(text):
            raise ValueError(f"{item!r} is not a cluster id or '*'")
        if text in out:
            raise ValueError(f"{item!r} is named twice")
        out.append(sys.intern(text))
    return tuple(out)


def tiers(preference: tuple[str, ...], clusters: set[str]) -> list[set[str]]:
    """``clusters`` grouped by ``preference``: one tier per named cluster present, ``*``
    for the clusters not named; clusters matching no item come last (as if a ``*``
    ended every preference)."""
    named = {p for p in preference if p != ANY_CLUSTER}
    out: list[set[str]] = []
    for p in preference:
        tier = clusters - named if p == ANY_CLUSTER else {p} & clusters
        if tier:
            out.append(tier)
    if ANY_CLUSTER not in preference and clusters - named:
        out.append(clusters - named)
    return out
