"""Who holds a name: one owner, or several whose records are merged.

Owners are the table's writers: a service, by its key ``(namespace, name)``, or a static
owner (a zone apex, the version TXT names, the namespaces' bare names), by a string.
Most names have one owner and keep nothing but their compiled answers; a name several
owners hold (a derived Service's ClusterIP is also its import's clusterset address) keeps
each owner's records, to merge them. ``Own`` is what one owner contributed last, to
replace it on its next write; ``Holders`` the owners of a lazy reverse name held by more
than one.
"""

from __future__ import annotations

from collections.abc import Mapping

from mcdns.answers import rdata as rd
from mcdns.answers.revindex import ReverseIndex, RevKey
from mcdns.proto import T_PTR

Owner = tuple[str, str] | str
"""A service's key (namespace, name), or a static owner's name."""
RRsets = dict[int, tuple[bytes, ...]]  # qtype -> rdata


class Shared:
    """Records of a name held by several owners, kept per owner to merge them."""

    __slots__ = ("by_owner",)

    def __init__(self) -> None:
        self.by_owner: dict[Owner, RRsets] = {}


class Own:
    """What one owner contributes, kept to replace it on its next set_owner.

    Its compiled names and its lazy reverse names share one tuple (one per owner, and
    there is an owner per service): ``keys[:split]`` and ``keys[split:]``."""

    __slots__ = ("keys", "sig", "split", "zones")

    def __init__(self) -> None:
        self.keys: tuple[RevKey, ...] = ()
        self.split = 0
        self.zones = 0  # bit i: lazy names (or deferred types) in zones[i]
        self.sig = 0  # hash of the records last handed in

    @property
    def names(self) -> tuple[bytes, ...]:
        """Compiled (hot) names."""
        return self.keys[:self.split]  # type: ignore[return-value]

    @property
    def rev(self) -> tuple[RevKey, ...]:
        """Lazy reverse names, by rev_key."""
        return self.keys[self.split:]


class Holders:
    """Owners of a lazy reverse name held by more than one owner."""

    __slots__ = ("owners",)

    def __init__(self, *owners: Owner) -> None:
        self.owners: list[Owner] = list(owners)



def merge(by_owner: Mapping[Owner, RRsets], ptr_zone: bytes) -> RRsets:
    """One name's records from several owners. The PTR names of an address held by
    several (a derived Service's ClusterIP is also its import's clusterset address; a
    pod IP can be mirrored by an import): the cluster zone's win (rdata.ptr_targets)."""
    out: dict[int, dict[bytes, None]] = {}
    for owner in sorted(by_owner, key=repr):
        for qtype, rds in by_owner[owner].items():
            out.setdefault(qtype, {}).update(dict.fromkeys(rds))
    merged = {t: tuple(v) for t, v in out.items()}
    if len(merged.get(T_PTR, ())) > 1:
        merged[T_PTR] = tuple(rd.ptr_targets(merged[T_PTR], ptr_zone))
    return merged


def hold(index: ReverseIndex[Owner | Holders], key: RevKey, owner: Owner) -> bool:
    """Add ``owner`` to the holders of a lazy reverse name; True when it had none."""
    held = index.get(key)
    if held is None:
        index[key] = owner
        return True
    if isinstance(held, Holders):
        held.owners.append(owner)
    elif held != owner:
        index[key] = Holders(held, owner)
    return False


def unhold(index: ReverseIndex[Owner | Holders], key: RevKey, owner: Owner) -> bool:
    """Remove ``owner`` from the holders of a lazy reverse name; True when none is left."""
    held = index.get(key)
    if isinstance(held, Holders):
        if owner in held.owners:
            held.owners.remove(owner)
        if len(held.owners) == 1:
            index[key] = held.owners[0]
        return False
    if held == owner:
        del index[key]
        return True
    return False
