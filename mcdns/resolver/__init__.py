"""Resolver role: forward names outside mcdns's zones to upstreams through a TTL cache.

The DNS handler owns the wire front (header, question, allow-list REFUSED); this package
owns everything after "this name is not ours": the cache, the upstream exchanges and
their counters. ``Resolver`` is the one entry point.
"""

from mcdns.resolver.resolver import Resolver

__all__ = ["Resolver"]
