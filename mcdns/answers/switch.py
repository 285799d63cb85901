"""A service's answer switching sides: what the compiler tells its listeners.

Failing over (local -> import), failing back (import -> local) and a change of the
remote cluster tier an answer comes from are the moments an operator wants to see. The
compiler hands each one to its listeners as a ``Switch``; the Kubernetes Event recorder
(``mcdns.kube.events``) is one listener, the metrics count them. Listeners are called
on the compile path, so they must only queue work, never wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcdns.answers.health import IMPORT, IMPORT_FIRST, LOCAL, Decision

FAILED_OVER = "FailedOver"
FAILED_BACK = "FailedBack"
TIER_CHANGED = "ClusterTierChanged"
DIRECTIONS = ("to_import", "to_local", "tier")


@dataclass(frozen=True, slots=True)
class Switch:
    """One switch of one service's answer."""

    namespace: str
    name: str
    kind: str  # the object the switch is recorded on: "Service", else "ServiceImport"
    reason: str  # FAILED_OVER, FAILED_BACK or TIER_CHANGED (the Event's reason)
    direction: str  # to_import, to_local or tier (the metric's label)
    note: str  # why, in the explain record's words (the Event's note)
    time: float  # wall clock, seconds


def switch_of(old: Decision | None, new: Decision, now: float) -> Switch | None:
    """The switch from answer ``old`` to ``new``, if it is one: a Service's answer moving
    between local and its import, or an import's answer moving to another cluster tier
    (with a cluster preference). None for the first decision and for everything else."""
    if old is None:
        return None
    kind = "Service" if new.service is not None else "ServiceImport"
    reason = direction = ""
    if new.service is not None and old.service is not None:
        # Failing over leaves the side the policy prefers: the import for import-first.
        away = FAILED_BACK if new.policy == IMPORT_FIRST else FAILED_OVER
        back = FAILED_OVER if new.policy == IMPORT_FIRST else FAILED_BACK
        if old.choice == LOCAL and new.choice == IMPORT:
            reason, direction = away, "to_import"
        elif old.choice == IMPORT and new.choice == LOCAL:
            reason, direction = back, "to_local"
    if not reason and (old.remote.clusterset_tier != new.remote.clusterset_tier or (
            old.choice == new.choice == IMPORT and old.remote.tier != new.remote.tier)):
        reason, direction = TIER_CHANGED, "tier"  # a zone's answer moved to another tier
    if not reason:
        return None
    return Switch(new.namespace, new.name, kind, reason, direction, new.reason, now)
