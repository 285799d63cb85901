"""Command line: ``mcdns serve``, ``mcdns check-config``, ``mcdns --version``.

Flags map one to one onto config keys and override the file. Every user error (config,
state file) ends here as one line naming the key or object and the problem, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from mcdns import __version__
from mcdns.config import POLICIES, ROLES, Config, ConfigError, load, parse_hostport
from mcdns.dns.server import ListenError
from mcdns.kube.settings import ClientConfigError
from mcdns.logs import JSONFormatter, setup_logging
from mcdns.state.statefile import StateError, read_objects, reduce_all

EXIT_USAGE = 2  # a configuration, state file or kubeconfig error
EXIT_RUNTIME = 1  # the config is fine, running it failed (a port in use)

# flag -> (config key, repeatable)
FLAGS: dict[str, tuple[str, bool]] = {
    "--listen": ("listen", True),
    "--state": ("state", False),
    "--kubeconfig": ("kubeconfig", False),
    "--namespace": ("namespaces", True),
    "--zone": ("zone", False),
    "--clusterset-zone": ("clusterset_zone", False),
    "--service-cidr": ("service_cidrs", True),
    "--pod-cidr": ("pod_cidrs", True),
    "--cluster-id": ("cluster_id", False),
    "--failback-delay": ("failback_delay", False),
    "--policy": ("policy", False),
    "--ttl": ("ttl", False),
    "--role": ("role", False),
    "--upstream": ("upstreams", True),
    "--resolv-conf": ("resolv_conf", False),
    "--http": ("http", False),
    "--log-format": ("log_format", False),
    "--log-level": ("log_level", False),
    "--workers": ("workers", False),
}
INT_KEYS = {"ttl", "workers"}
FLOAT_KEYS = {"failback_delay"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcdns", description="Multi-cluster DNS for Kubernetes "
                                "with health-aware fallback.")
    p.add_argument("--version", action="version", version=f"mcdns {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the DNS server")
    s.add_argument("--config", metavar="FILE", help="YAML config file (flags override it)")
    for flag, (key, many) in FLAGS.items():
        kw: dict[str, Any] = {"dest": key, "default": None}
        if many:
            kw["action"] = "append"
        if key == "policy":
            kw["choices"] = POLICIES
        if key == "role":
            kw["choices"] = ROLES
        if key in INT_KEYS:
            kw["type"] = int
        if key in FLOAT_KEYS:
            kw["type"] = float
        s.add_argument(flag, **kw)
    s.add_argument("--query-log", dest="query_log", action="store_true", default=None,
                   help="log queries (sampled)")
    s.add_argument("--no-metrics", dest="metrics", action="store_false", default=None,
                   help="count nothing on the query path (/metrics keeps the rest)")
    e = sub.add_parser("explain", help="explain why a name answers what it answers")
    e.add_argument("name")
    e.add_argument("--server", default="127.0.0.1:5353", help="mcdns to ask (HOST:PORT)")
    c = sub.add_parser("check-config", help="validate a config file and exit")
    c.add_argument("file")
    c.add_argument("--state", help="also validate this state file")
    return p


def overrides(ns: argparse.Namespace) -> dict[str, Any]:
    keys = [k for k, _ in FLAGS.values()] + ["query_log", "metrics"]
    return {k: getattr(ns, k) for k in keys if getattr(ns, k, None) is not None}


def check_state(path: str) -> int:
    """Validate a state file strictly; returns the number of objects kept."""
    by_kind = reduce_all(read_objects(path), strict=True)
    return sum(len(v) for v in by_kind.values())


def explain_cmd(name: str, server: str) -> int:
    """Ask a running mcdns for the explain record (CH TXT) and print it readably."""
    from mcdns.ops.explain_client import ExplainError, fetch_explain

    target = parse_hostport(server, "--server", 53)
    try:
        lines = fetch_explain(name, target)
    except ExplainError as e:
        print(f"mcdns: error: {e}", file=sys.stderr)
        return 1
    for line in lines:
        key, _, rest = line.partition("=")
        print(f"{key:>18}  {rest}" if rest else line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "check-config":
            cfg = load(args.file)
            msg = f"{args.file}: ok"
            state = args.state or cfg.state
            if state:
                msg += f"; state {state}: {check_state(state)} objects ok"
            print(msg)
            return 0
        if args.command == "explain":
            return explain_cmd(args.name, args.server)
        flags = overrides(args)
        cfg = load(args.config, flags)
        setup_logging(cfg.log_format, cfg.log_level)
        return run(cfg, flags)
    except (ConfigError, StateError, ClientConfigError) as e:
        return _fail(str(e), EXIT_USAGE, args)
    except ListenError as e:  # a runtime failure: the config may be right
        return _fail(str(e), EXIT_RUNTIME, args)


def _fail(message: str, code: int, args: argparse.Namespace) -> int:
    """One line on stderr: a JSON log line when JSON logs were asked for."""
    if getattr(args, "log_format", None) == "json" or _json_logs():
        logging.getLogger("mcdns").error(message)
    else:
        print(f"mcdns: error: {message}", file=sys.stderr)
    return code


def _json_logs() -> bool:
    """Whether logging is already set up to write JSON (the config said so)."""
    return any(isinstance(h.formatter, JSONFormatter) for h in logging.getLogger().handlers)


def run(cfg: Config, flags: dict[str, Any] | None = None) -> int:
    """Serve; with ``workers`` > 1, fork that many processes sharing the sockets
    (SO_REUSEPORT). The first one also serves HTTP and forwards signals to the others."""
    children: list[int] = []
    for _ in range(cfg.workers - 1):
        pid = os.fork()
        if pid == 0:  # a worker: DNS only, no HTTP port (nor Events: the first records them)
            os._exit(_loop(cfg.replace(http=None, events=False), flags, []))
        children.append(pid)
    try:
        return _loop(cfg, flags, children)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _loop(cfg: Config, flags: dict[str, Any] | None, children: list[int]) -> int:
    from mcdns.app import serve

    try:
        return _run(serve(cfg, flags, children))
    except KeyboardInterrupt:  # pragma: no cover
        return 0


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` under uvloop, or asyncio when uvloop cannot be imported. Only the
    import is guarded: an ImportError while serving is an error, not a reason to serve
    again under asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig()
    sys.exit(main())
