"""The PTR index's map: reverse-name key -> holder, compact for IPv4 addresses.

A cluster has one PTR name per pod IP and ClusterIP, so this map is as long as the
cluster is large (29,300 entries at 10,000 services). As a dict, each entry costs ~45
bytes of hash table at a dict's usual load (1.3 MB there). Here IPv4 keys (the common
case) live in a sorted ``array('I')`` with a parallel list of values: 12 bytes an entry.
Lookups bisect (only first asks of a PTR name come here; answers are memoised).

Writes that hit an existing key change it in place; new keys wait in a dict and are
merged in (a linear merge of two sorted runs) once they number an eighth of the array:
a first sync of N addresses is O(log N) merges, not N array inserts, and at rest at
most an eighth of the keys wait in the dict. A removal pops from the array (a memmove).
Other keys (IPv6 addresses as ints above 2**32, non-canonical names as bytes) use a
plain dict.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator
from typing import Generic, TypeVar

from mcdns.answers.rdata import name_wire

V = TypeVar("V")
RevKey = int | bytes  # a reverse name as rev_key gives it
V4_END = 1 << 32
MERGE_MIN = 64  # new keys wait unsorted up to max(MERGE_MIN, len // 8)


class ReverseIndex(Generic[V]):
    """A map from reverse-name keys to values (never None), compact for IPv4 keys."""

    __slots__ = ("_keys", "_new", "_other", "_vals")

    def __init__(self) -> None:
        self._keys = array("I")  # sorted IPv4 keys
        self._vals: list[V] = []  # their values, same order
        self._new: dict[int, V] = {}  # IPv4 keys not yet sorted in (none also in _keys)
        self._other: dict[RevKey, V] = {}  # every other key

    def get(self, key: RevKey) -> V | None:
        if not _is_v4(key):
            return self._other.get(key)
        k = int(key)
        if self._new:
            got = self._new.get(k)
            if got is not None:
                return got
        i = bisect_left(self._keys, k)
        if i < len(self._keys) and self._keys[i] == k:
            return self._vals[i]
        return None

    def __setitem__(self, key: RevKey, value: V) -> None:
        if not _is_v4(key):
            self._other[key] = value
            return
        k = int(key)
        i = bisect_left(self._keys, k)
        if i < len(self._keys) and self._keys[i] == k:
            self._vals[i] = value
            return
        self._new[k] = value
        if len(self._new) > max(MERGE_MIN, len(self._keys) >> 3):
            self._merge()

    def __delitem__(self, key: RevKey) -> None:
        if not _is_v4(key):
            del self._other[key]
            return
        k = int(key)
        if self._new.pop(k, None) is not None:
            return
        i = bisect_left(self._keys, k)
        if i == len(self._keys) or self._keys[i] != k:
            raise KeyError(key)
        del self._keys[i]
        del self._vals[i]

    def __len__(self) -> int:
        return len(self._keys) + len(self._new) + len(self._other)

    def __iter__(self) -> Iterator[RevKey]:
        yield from list(self._keys)
        yield from list(self._new)
        yield from list(self._other)

    def _merge(self) -> None:
        """Sort the new keys in: the array and the sorted new keys are two sorted runs,
        which timsort merges in linear time (keys are unique: values never compare)."""
        items = [*zip(self._keys, self._vals, strict=True), *sorted(self._new.items())]
        items.sort()
        self._keys = array("I", [k for k, _ in items])
        self._vals = [v for _, v in items]
        self._new = {}


def _is_v4(key: RevKey) -> bool:
    return isinstance(key, int) and 0 <= key < V4_END


_V4_ARPA = name_wire("in-addr.arpa.")
_V6_ARPA = name_wire("ip6.arpa.")
_V6_BASE = 1 << 128  # IPv6 keys sit above every IPv4 key
_HEX = b"0123456789abcdef"


def rev_key(wire: bytes) -> RevKey:
    """The reverse index's key for a lower-case wire name: the address as an int for a
    full, canonical in-addr.arpa / ip6.arpa name (IPv6 offset by 2**128), else the name
    itself. One-to-one, and rev_wire inverts it."""
    if wire.endswith(_V4_ARPA):
        end, i, value, shift = len(wire) - len(_V4_ARPA), 0, 0, 0
        while i < end and shift < 32:
            n = wire[i]
            label = wire[i + 1:i + 1 + n]
            if not (0 < n <= 3 and label.isdigit() and (n == 1 or label[0] != 0x30)):
                return wire
            octet = int(label)
            if octet > 255:
                return wire
            value |= octet << shift
            shift += 8
            i += n + 1
        return value if i == end and shift == 32 else wire
    if wire.endswith(_V6_ARPA) and len(wire) == 64 + len(_V6_ARPA):
        nibbles = wire[1:64:2]
        if wire[0:64:2] == b"\x01" * 32 and not nibbles.translate(None, _HEX):
            return _V6_BASE + int(nibbles[::-1], 16)
    return wire


def rev_wire(key: RevKey) -> bytes:
    """The wire name of a reverse index key."""
    if isinstance(key, bytes):
        return key
    if key >= _V6_BASE:
        digits = f"{key - _V6_BASE:032x}"[::-1]
        return b"".join(b"\x01" + d.encode() for d in digits) + _V6_ARPA
    octets = [str(key >> s & 0xFF).encode() for s in (0, 8, 16, 24)]
    return b"".join(bytes((len(o),)) + o for o in octets) + _V4_ARPA
