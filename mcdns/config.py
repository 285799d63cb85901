"""Configuration: one frozen ``Config`` loaded once, from a YAML file and CLI flags.

Every key of the YAML file is a field of ``Config``; CLI flags override the file.
Validation happens here, in one place, so that a bad file fails at start-up (or is
refused on reload) with a message naming the key and the problem, and the rest of the
program can trust every value it reads.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mcdns.objects.failover import parse_delay, parse_preference
from mcdns.objects.names import is_dns1123_label, is_dns1123_subdomain

ROLES = ("stub", "resolver", "forwarder")
POLICIES = ("local-first", "local-only", "import-first")
# Failing back waits until the local side has stayed healthy this long: past a second
# successful readiness probe at Kubernetes' default period (10 s), so a pod that turns
# ready and crashes at once never pulls the traffic back. (The test suite sets it to 0
# to keep its older failback tests immediate; tests of the hold-down set their own.)
DEFAULT_FAILBACK_DELAY = 10.0
POD_MODES = ("insecure", "disabled")
LOG_FORMATS = ("logfmt", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_CONFIG_BYTES = 1 << 20


class ConfigError(ValueError):
    """A configuration value is wrong; ``key`` names it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to listen on or to send to."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    """Everything mcdns reads from its config file or flags. One docstring line a key."""

    role: str = "stub"
    """stub (answer the zones), resolver (and forward other names) or forwarder (no watch)."""
    listen: tuple[HostPort, ...] = (HostPort("127.0.0.1", 5353),)
    """DNS listen addresses; each gets UDP and TCP."""
    zone: str = "cluster.local"
    """The cluster zone answered with health-aware fallback."""
    clusterset_zone: str = "clusterset.local"
    """The MCS clusterset zone."""
    service_cidrs: tuple[str, ...] = ()
    """The cluster's Service networks: mcdns is authoritative for their reverse zones."""
    pod_cidrs: tuple[str, ...] = ()
    """The cluster's Pod networks: mcdns is authoritative for their reverse zones."""
    reverse_zones: tuple[str, ...] = ()
    """Deprecated (use service_cidrs, pod_cidrs): reverse zones claimed whole (stub role)."""
    cluster_id: str = ""
    """This cluster's id in the clusterset (else the ClusterProperty, else empty)."""
    policy: str = "local-first"
    """Default fallback policy: local-first, local-only or import-first."""
    min_ready: int = 1
    """Ready local endpoints a Service needs to count as healthy."""
    failback_delay: float = field(default_factory=lambda: DEFAULT_FAILBACK_DELAY)
    """Seconds the local side must stay healthy before a failed-over answer fails back."""
    failback_ready: int | None = None
    """Ready local pods needed to fail back (at least min_ready; null: min_ready)."""
    cluster_preference: tuple[str, ...] = ()
    """Remote cluster tiers, in order ("*": every other); empty: all ready clusters."""
    events: bool = True
    """Record failovers as Kubernetes Events (events.k8s.io/v1) on the Service."""
    ttl: int = 5
    """TTL of every answer and SOA minimum (0-3600)."""
    pods: str = "insecure"
    """Pod records <a-b-c-d>.<ns>.pod.<zone>: insecure or disabled."""
    max_udp_size: int = 1232
    """Largest UDP answer mcdns sends to an EDNS client (512-65535)."""
    state: str | None = None
    """Path of a state file (kubectl -o yaml output) to serve instead of the API."""
    kubeconfig: str | None = None
    """Path of a kubeconfig; without it and without state, in-cluster config."""
    namespaces: tuple[str, ...] = ()
    """Resolver role: only watch these namespaces, forward the others' names (empty: all)."""
    tcp_idle_timeout: float = 10.0
    """Seconds an idle TCP connection is kept open (RFC 7766)."""
    tcp_max_connections: int = 1024
    """Concurrent TCP connections accepted; more are closed at once."""
    tcp_max_queries: int = 0
    """Queries answered on one TCP connection before it is closed (0: no limit)."""
    rrl_responses_per_second: int = 0
    """UDP response rate limit per client network, responses a second (0: off)."""
    rrl_slip: int = 2
    """Every Nth rate-limited response goes out truncated (TC=1) instead of dropped (0: never)."""
    rrl_window: int = 15
    """Seconds of excess a flooding client network must pay back before answers resume."""
    rrl_ipv4_prefix: int = 24
    """Prefix length grouping IPv4 clients into one rate-limited network."""
    rrl_ipv6_prefix: int = 56
    """Prefix length grouping IPv6 clients into one rate-limited network."""
    upstreams: tuple[HostPort, ...] = ()
    """Resolver role: upstream servers (empty: nameservers of resolv_conf)."""
    cluster_upstreams: tuple[HostPort, ...] = ()
    """Forwarder role: the mcdns Service (role stub) the cluster zones are forwarded to."""
    autopath: bool = False
    """Resolver roles: answer a name plus the first search domain with a CNAME to the name."""
    search: tuple[str, ...] = ()
    """Autopath: the pod's search domains (empty: the search line of resolv_conf)."""
    resolv_conf: str = "/etc/resolv.conf"
    """Resolver role: file read for upstreams when none are configured."""
    upstream_timeout: float = 2.0
    """Resolver role: seconds to wait for one upstream before trying the next."""
    upstream_tcp: bool = False
    """Resolver roles: ask upstreams over TCP only (CoreDNS's force_tcp; node-local mode)."""
    cache_size: int = 10000
    """Resolver role: most entries the forwarding cache holds."""
    cache_min_ttl: int = 0
    """Resolver role: lowest TTL a cached answer is kept for."""
    cache_max_ttl: int = 3600
    """Resolver role: highest TTL a cached answer is kept for."""
    serve_stale: int = 86400
    """Resolver role: seconds past expiry an answer may be served when upstreams fail."""
    allow: tuple[str, ...] = ()
    """Resolver role: client networks allowed (empty: loopback and listen networks)."""
    http: HostPort | None = HostPort("127.0.0.1", 9153)
    """HTTP listener for /health, /ready and /metrics (null to disable)."""
    lameduck: float = 5.0
    """Seconds DNS keeps answering after SIGTERM while health fails."""
    log_format: str = "logfmt"
    """logfmt or json."""
    log_level: str = "info"
    """debug, info, warning or error."""
    query_log: bool = False
    """Log queries (sampled)."""
    query_log_sample: float = 0.01
    """Fraction of queries logged when query_log is on (0-1)."""
    metrics: bool = True
    """Count queries for /metrics (off: nothing is counted on the query path)."""
    workers: int = 1
    """DNS worker processes sharing the listen sockets with SO_REUSEPORT."""
    udp_batch: bool = True
    """Receive and send UDP in batches (recvmmsg/sendmmsg; Linux, else ignored)."""
    config_file: str | None = field(default=None, metadata={"internal": True})
    """Where this config came from (set by the loader, not a key)."""

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


KEYS: tuple[str, ...] = tuple(f.name for f in fields(Config) if not f.metadata.get("internal"))


def parse_hostport(text: str, key: str, default_port: int) -> HostPort:
    """Parse ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    text = str(text).strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(key, f"{text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(key, f"{text!r}: expected ':port' after ']'")
            port = _port(rest[1:], key, text)
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = _port(p, key, text)
    if not host:
        raise ConfigError(key, f"{text!r}: empty host")
    return HostPort(host, port)


def _port(text: str, key: str, whole: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(key, f"{whole!r}: port {text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(key, f"{whole!r}: port {port} out of range 0-65535")
    return port


def _zone(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip(".").strip():
        raise ConfigError(key, f"{value!r} is not a domain name")
    zone = value.strip().strip(".").lower()
    for label in zone.split("."):
        if not label or len(label) > 63:
            raise ConfigError(key, f"{value!r} has an empty or over-long label")
    return zone


def _number(value: Any, key: str, lo: float, hi: float, whole: bool = True) -> Any:
    """An int (``whole``) or a float in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
        raise ConfigError(key, f"{value!r} is not {'an integer' if whole else 'a number'}")
    if not lo <= value <= hi:
        raise ConfigError(key, f"{value} is out of range {lo}-{hi}")
    return value if whole else float(value)


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(choices)}")
    return str(value)


def _str_list(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, f"{value!r} is not a list of strings")
    return tuple(value)


def _opt_str(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(key, f"{value!r} is not a string")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"{value!r} is not true or false")
    return value


def _namespaces(values: tuple[str, ...], key: str) -> tuple[str, ...]:
    """Namespace names (RFC 1123 labels, as Kubernetes requires), duplicates dropped."""
    for v in values:
        if not is_dns1123_label(v):
            raise ConfigError(key, f"{v!r} is not a namespace name (a lowercase RFC 1123 "
                              "label: a-z, 0-9 and '-', at most 63 characters)")
    return tuple(dict.fromkeys(values))


def _networks(values: tuple[str, ...], key: str) -> tuple[str, ...]:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ConfigError(key, f"{v!r} is not an IP network") from None
    return values


def _cidrs(values: tuple[str, ...], key: str) -> tuple[str, ...]:
    """Networks in normal form (host bits cleared, as CoreDNS does), duplicates dropped."""
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_network(v.strip() if "/" in v else "-", strict=False)))
        except ValueError:
            raise ConfigError(key, f"{v!r} is not a CIDR (an IPv4 or IPv6 network written "
                              "address/prefix, e.g. 10.96.0.0/12 or fd00:10:96::/112)") from None
    return tuple(dict.fromkeys(out))


# Each choice key's values, and each integer and float key's range (inclusive).
CHOICES = {"role": ROLES, "policy": POLICIES, "pods": POD_MODES, "log_format": LOG_FORMATS,
           "log_level": LOG_LEVELS}
INT_RANGES: dict[str, tuple[int, int]] = {
    "min_ready": (0, 1_000_000), "ttl": (0, 3600), "max_udp_size": (512, 65535),
    "tcp_max_connections": (1, 1_000_000), "tcp_max_queries": (0, 1_000_000_000),
    "rrl_responses_per_second": (0, 10_000_000), "rrl_slip": (0, 10), "rrl_window": (1, 3600),
    "rrl_ipv4_prefix": (8, 32), "rrl_ipv6_prefix": (16, 128), "cache_size": (0, 10_000_000),
    "cache_min_ttl": (0, 604800), "cache_max_ttl": (0, 604800), "serve_stale": (0, 604800),
    "workers": (1, 256)}
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "tcp_idle_timeout": (0.1, 3600), "upstream_timeout": (0.01, 60), "lameduck": (0, 300),
    "query_log_sample": (0.0, 1.0)}


def _coerce(key: str, value: Any) -> Any:
    """Validate one raw value and return it in the type ``Config`` holds."""
    match key:
        case "role" | "policy" | "pods" | "log_format" | "log_level":
            return _choice(value, key, CHOICES[key])
        case "listen":
            items = _str_list(value, key)
            if not items:
                raise ConfigError(key, "needs at least one address")
            return tuple(parse_hostport(v, key, 53) for v in items)
        case "upstreams" | "cluster_upstreams":
            return tuple(parse_hostport(v, key, 53) for v in _str_list(value, key))
        case "http":
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                raise ConfigError(key, f"{value!r} is not HOST:PORT")
            return parse_hostport(value, key, 9153)
        case "zone" | "clusterset_zone":
            return _zone(value, key)
        case "reverse_zones" | "search":
            return tuple(_zone(v, key) for v in _str_list(value, key))
        case "service_cidrs" | "pod_cidrs":
            return _cidrs(_str_list(value, key), key)
        case "cluster_id":
            if not isinstance(value, str):
                raise ConfigError(key, f"{value!r} is not a string")
            if value and not is_dns1123_subdomain(value):
                raise ConfigError(key, f"{value!r} is not a cluster id (a DNS-1123 "
                                  "subdomain: lowercase a-z, 0-9, '-' and '.')")
            return value
        case "failback_delay":
            try:
                return parse_delay(value)
            except ValueError as e:
                raise ConfigError(key, str(e)) from None
        case "failback_ready":
            return None if value is None else _number(value, key, 0, 1_000_000)
        case "cluster_preference":
            try:
                return parse_preference(value)
            except ValueError as e:
                raise ConfigError(key, str(e)) from None
        case "query_log" | "metrics" | "udp_batch" | "events" | "autopath" | "upstream_tcp":
            return _bool(value, key)
        case _ if key in INT_RANGES:
            return _number(value, key, *INT_RANGES[key])
        case _ if key in FLOAT_RANGES:
            return _number(value, key, *FLOAT_RANGES[key], whole=False)
        case "state" | "kubeconfig":
            return _opt_str(value, key)
        case "resolv_conf":
            if not isinstance(value, str) or not value:
                raise ConfigError(key, f"{value!r} is not a path")
            return value
        case "namespaces":
            return _namespaces(_str_list(value, key), key)
        case "allow":
            return _networks(_str_list(value, key), key)
    raise ConfigError(key, "unknown key")  # pragma: no cover - KEYS guards this


def build(values: Mapping[str, Any], base: Config | None = None) -> Config:
    """Return ``base`` (or the defaults) with ``values`` validated and applied."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in KEYS:
            raise ConfigError(key, f"unknown key (known keys: {', '.join(KEYS)})")
        changes[key] = _coerce(key, value)
    cfg = (base or Config()).replace(**changes)
    _check_whole(cfg)
    return cfg


def _check_whole(cfg: Config) -> None:
    if cfg.cache_min_ttl > cfg.cache_max_ttl:
        raise ConfigError("cache_min_ttl", "is larger than cache_max_ttl")
    if cfg.failback_ready is not None and cfg.failback_ready < cfg.min_ready:
        raise ConfigError("failback_ready", f"{cfg.failback_ready} is below min_ready "
                          f"({cfg.min_ready}): failing back takes at least min_ready pods")
    if cfg.zone == cfg.clusterset_zone:
        raise ConfigError("clusterset_zone", "must differ from zone")
    if cfg.namespaces and cfg.role == "stub":
        raise ConfigError("namespaces", "is for the resolver role only: behind CoreDNS "
                          "(role stub) every namespace's names come to mcdns, and those of "
                          "namespaces it does not watch would be NXDOMAIN; watch all "
                          "namespaces (namespaces: []) or use role resolver")
    if cfg.state and cfg.kubeconfig:
        raise ConfigError("state", "state and kubeconfig are exclusive; give one")
    _check_roles(cfg)
    if cfg.workers > 1 and any(hp.port == 0 for hp in cfg.listen):
        raise ConfigError("workers", "several workers need fixed listen ports, not port 0")


def _check_roles(cfg: Config) -> None:
    """The forwarder role and autopath: what they need, and where they make no sense."""
    forwarder = cfg.role == "forwarder"
    if forwarder != bool(cfg.cluster_upstreams):
        raise ConfigError("cluster_upstreams", "role forwarder needs the address of the mcdns "
                          "Service (role stub) to forward the cluster zones to" if forwarder
                          else f"is for role forwarder only (role {cfg.role} answers the "
                          "cluster zones itself)")
    for key in ("state", "kubeconfig", "namespaces") if forwarder else ():
        if getattr(cfg, key):
            raise ConfigError(key, "role forwarder reads no cluster state: it forwards the "
                              "cluster zones to cluster_upstreams")
    if cfg.autopath and cfg.role == "stub":
        raise ConfigError("autopath", "is for roles resolver and forwarder: behind CoreDNS "
                          "(role stub) mcdns does not know the client's search path")
    if cfg.autopath and cfg.search and (problem := search_problem(cfg.search, cfg.zone)):
        raise ConfigError("search", problem)


def search_problem(search: tuple[str, ...], zone: str) -> str | None:
    """Why autopath cannot use ``search`` (None: it can): its first domain is not in zone."""
    if search and search[0].endswith("." + zone):
        return None
    return (f"autopath needs the pod's search domains, the first inside zone {zone} (the "
            f"pod's <namespace>.svc.{zone}); got {' '.join(search) or 'none'}")


def yaml_problem(e: Exception) -> str:
    """A YAML (or JSON) error in one line: where in the file, and what."""
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        what = " ".join(str(getattr(e, "problem", "") or e).split())
        return f"line {mark.line + 1} column {mark.column + 1}: {what}"
    if hasattr(e, "lineno") and hasattr(e, "colno") and hasattr(e, "msg"):
        return f"line {e.lineno} column {e.colno}: {e.msg}"
    return " ".join(str(e).split())


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, naming the problem when it is not one."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError("<file>", f"{p} is larger than {MAX_CONFIG_BYTES} bytes")
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("<file>", f"cannot read {p}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("<file>", f"{p} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("<file>", f"{p}: not valid YAML: {yaml_problem(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("<file>", f"{p} must hold a mapping of keys, not {type(data).__name__}")
    return data


def load(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load the config file (if any), then apply CLI overrides; both validated."""
    values: dict[str, Any] = read_file(path) if path else {}
    values.update(overrides or {})
    cfg = build(values)
    return cfg.replace(config_file=str(path) if path else None)
