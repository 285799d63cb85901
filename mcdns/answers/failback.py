"""Failing back without flapping: the hold-down between "local is healthy again" and
"answer local again".

Failing over is immediate (a decision says IMPORT the moment the local side is
unhealthy). Failing back is not: once a service's answer is its import, the local side
must have ``failback_ready`` ready pods (at least min_ready) and keep them for
``failback_delay`` seconds before the answer returns to it. A crash-looping pod then no
longer moves all traffic back and forth, and one pod coming back no longer pulls all of
it. Anything that makes the local side unhealthy again during the hold-down restarts it;
an import that stops being a fallback target ends it at once (holding on to a dead
import would black-hole the name).

``decide`` stays a function of the objects; this part owns the only memory of time the
answers have: when each pending failback started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mcdns.answers.health import IMPORT, LOCAL, LOCAL_FIRST, Decision
from mcdns.objects.model import Key


class Failbacks:
    """Pending failbacks, by service: when its local side became healthy enough."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.since: dict[Key, float] = {}

    def apply(self, key: Key, want: Decision, old: Decision | None,
              now: float | None = None) -> tuple[Decision, float | None]:
        """The decision to answer with, and when to look again (a monotonic time) while
        a failback is pending. ``want`` is what the objects say now, ``old`` the answer
        until now; ``now`` the time of the change (one per commit: services that came
        back together end their hold-downs together)."""
        if (old is None or old.choice != IMPORT or old.service is None
                or want.choice != LOCAL or want.service is None or want.imp is None
                or want.policy != LOCAL_FIRST or not want.remote.available
                or want.service.type == "ExternalName" or want.local_ready < want.min_ready):
            # Nothing to hold: failed over (or still), no Service was failed over (a new
            # one beside its import), no fallback left, or local was chosen by a rule
            # other than health (an ExternalName; min_ready 0 with nothing ready).
            self.since.pop(key, None)
            return want, None
        if want.local_ready < want.failback_ready:
            self.since.pop(key, None)
            return _held(want, f"failback needs {want.failback_ready} ready local pods, "
                               f"has {want.local_ready}"), None
        now = self.clock() if now is None else now
        since = self.since.setdefault(key, now)
        if now - since >= want.failback_delay:
            del self.since[key]
            return want, None
        return _held(want, f"failback pending (hold-down {want.failback_delay:g} s)"), (
            since + want.failback_delay)

    def pending(self, key: Key) -> float | None:
        """Seconds the local side of ``key`` has been healthy in a pending failback."""
        since = self.since.get(key)
        return None if since is None else self.clock() - since

    def forget(self, key: Key) -> None:
        self.since.pop(key, None)


def _held(want: Decision, why: str) -> Decision:
    """``want`` answered by the import a while longer (it is available: not degraded)."""
    return dataclasses.replace(want, choice=IMPORT, degraded=False,
                               reason=f"{want.reason}; {why}")
