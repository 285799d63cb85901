"""Resolver role: forward names outside mcdns's zones to upstreams through a TTL cache.

The DNS handler owns the wire front (header, question, allow-list REFUSED); this package
owns everything after "this name is not ours": the cache, the upstream exchanges and
their counters. ``mcdns.resolver.resolver.Resolver`` is the one entry point (imported
from there, so the package's own modules never import the package back).
"""
