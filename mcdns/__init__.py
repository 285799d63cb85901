"""mcdns: a multi-cluster DNS server for Kubernetes with health-aware fallback.

The package answers ``cluster.local`` with the local Service while it has ready
endpoints and with the multi-cluster (ServiceImport) address when it has none, and
serves ``clusterset.local`` per the MCS DNS specification.
"""

__version__ = "0.1.0"
