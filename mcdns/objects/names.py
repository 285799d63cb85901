"""Kubernetes name rules, exactly as the API server applies them.

An object the API server accepts must never be rejected here (an EndpointSlice named
``imported-<cluster>-<slice>`` is a 121-character DNS subdomain, not a DNS label), and an
object it would refuse is refused with the rule named. The rules are those of
k8s.io/apimachinery ``pkg/util/validation/validation.go`` (IsDNS1123Label,
IsDNS1123Subdomain, IsDNS1035Label) and which kind uses which, of
``pkg/apis/core/validation`` and ``pkg/apis/discovery/validation``:

- Service: DNS-1035 label (a letter first).
- Namespace, endpoint ``hostname``: DNS-1123 label.
- EndpointSlice, ServiceImport (a CRD), ClusterProperty: DNS-1123 subdomain.
"""

from __future__ import annotations

import re

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def is_dns1123_label(name: str) -> bool:
    """Lower-case letters, digits and '-', alphanumeric at both ends, 1-63 characters."""
    return 0 < len(name) <= LABEL_MAX and _DNS1123_LABEL.fullmatch(name) is not None


def is_dns1123_subdomain(name: str) -> bool:
    """DNS-1123 labels joined by dots, 1-253 characters in all. As in the API server,
    only the total is limited, not each label: a 121-character name without a dot is a
    valid EndpointSlice name."""
    return 0 < len(name) <= SUBDOMAIN_MAX and _DNS1123_SUBDOMAIN.fullmatch(name) is not None


def is_dns1035_label(name: str) -> bool:
    """A DNS-1123 label that starts with a letter."""
    return 0 < len(name) <= LABEL_MAX and _DNS1035_LABEL.fullmatch(name) is not None



_LABEL_VALUE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def is_label_value(value: str) -> bool:
    """A label value: empty, or 1-63 characters of letters, digits, '-', '_' and '.',
    alphanumeric at both ends (IsValidLabelValue)."""
    return value == "" or (len(value) <= LABEL_MAX
                           and _LABEL_VALUE.fullmatch(value) is not None)
