"""The PTR index's compact map behaves exactly like a dict, across merges and removals."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mcdns.answers.revindex import MERGE_MIN, ReverseIndex, RevKey

KEYS = st.one_of(
    st.integers(0, (1 << 32) - 1),  # IPv4, the compact part
    st.integers(0, 300),  # a few IPv4 keys that repeat, so overwrites and removals hit
    st.integers(1 << 128, (1 << 129) - 1),  # IPv6 (offset), the dict part
    st.binary(min_size=1, max_size=8),  # non-canonical names
)
OPS = st.lists(st.tuples(st.sampled_from(["set", "del", "get"]), KEYS, st.integers()),
               max_size=600)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_same_as_a_dict(ops: list[tuple[str, RevKey, int]]) -> None:
    index: ReverseIndex[int] = ReverseIndex()
    model: dict[RevKey, int] = {}
    for op, key, value in ops:
        if op == "set":
            index[key] = value
            model[key] = value
        elif op == "del" and key in model:
            del index[key]
            del model[key]
        assert index.get(key) == model.get(key)
    assert len(index) == len(model)
    assert sorted(index, key=repr) == sorted(model, key=repr)
    assert all(index.get(k) == v for k, v in model.items())


def test_bulk_load_merges_and_stays_sorted() -> None:
    """Ten thousand new IPv4 keys in random order: found, and at any time at most an
    eighth of the sorted ones wait unsorted."""
    index: ReverseIndex[str] = ReverseIndex()
    keys = [(i * 2654435761) % (1 << 32) for i in range(10_000)]
    for k in keys:
        index[k] = f"v{k}"
        assert len(index._new) <= max(MERGE_MIN, len(index._keys) >> 3)
    assert all(index.get(k) == f"v{k}" for k in keys)
    present = set(keys)
    # keys next to present ones (the bisect lands beside them) and past the largest
    absent = [k + d for k in keys[:500] for d in (-1, 1) if 0 <= k + d < 1 << 32]
    absent += [min(keys) - 1, max(keys) + 1, (1 << 32) - 1]
    absent = [k for k in absent if k not in present and 0 <= k < 1 << 32]
    assert len(absent) > 900
    assert [k for k in absent if index.get(k) is not None] == []
    sorted_part = list(index._keys)
    assert sorted_part == sorted(sorted_part)
    assert len(sorted_part) + len(index._new) == 10_000
    for k in keys[::2]:
        del index[k]
    assert [index.get(k) for k in keys[:4]] == [None, f"v{keys[1]}", None, f"v{keys[3]}"]
    assert len(index) == 5_000
