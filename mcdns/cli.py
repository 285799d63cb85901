"""Command line: ``mcdns serve``, ``mcdns check-config``, ``mcdns --version``, and
``mcdns setup-interface`` (the node-local DaemonSet's init container).

Flags map one to one onto config keys and override the file. Every user error (config,
state file) ends here as one line naming the key or object and the problem, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from mcdns import __version__
from mcdns.config import POLICIES, ROLES, Config, ConfigError, load, parse_hostport
from mcdns.dns.server import ListenError
from mcdns.kube.settings import ClientConfigError
from mcdns.logs import JSONFormatter, setup_logging
from mcdns.state.statefile import StateError, read_objects, reduce_all

if TYPE_CHECKING:  # imported when serving: --version and --help stay light
    from mcdns.ops.worker_link import WorkerLink
    from mcdns.ops.workers import Supervisor

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
    "--cluster-upstream": ("cluster_upstreams", True),
    "--search": ("search", True),
    "--resolv-conf": ("resolv_conf", False),
    "--http": ("http", False),
    "--log-format": ("log_format", False),
    "--log-level": ("log_level", False),
    "--workers": ("workers", False),
    "--allow": ("allow", True),
    "--upstream-tcp": ("upstream_tcp", False),
}
INT_KEYS = {"ttl", "workers"}
FLOAT_KEYS = {"failback_delay"}
BOOL_KEYS = {"upstream_tcp"}


def key_docs() -> dict[str, str]:
    """Each config key's docstring line (the attribute docstrings of ``Config``), so a
    flag's help says what the key's documentation says, written once."""
    import ast
    import inspect

    from mcdns import config as config_module

    tree = ast.parse(inspect.getsource(config_module))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    docs: dict[str, str] = {}
    for node, after in zip(cls.body, cls.body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _metavar(key: str) -> str:
    """What a flag's value looks like, for --help."""
    if key in ("listen", "upstreams", "cluster_upstreams", "http"):
        return "HOST:PORT"
    if key in ("state", "kubeconfig", "resolv_conf"):
        return "FILE"
    if key.endswith("_cidrs") or key == "allow":
        return "CIDR"
    if key in INT_KEYS:
        return "N"
    if key in FLOAT_KEYS:
        return "SECONDS"
    if key in BOOL_KEYS:
        return "true|false"
    return key.upper().removesuffix("S") if key == "namespaces" else key.upper()


SUBCOMMANDS = {
    "serve": "run the DNS server (flags override the config file)",
    "explain": "ask a running mcdns why a name answers what it answers",
    "check-config": "validate a config file (and a state file) and exit",
    "setup-interface": "node-local mode: put the addresses on an interface",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcdns", description="Multi-cluster DNS for Kubernetes with health-aware "
        "fallback: answers cluster.local from the local Service while it has ready "
        "endpoints and from its ServiceImport when it has none, and serves clusterset.local.",
        epilog="Run `mcdns COMMAND --help` for a command's flags.")
    p.add_argument("--version", action="version", version=f"mcdns {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           title="commands")
    docs = key_docs()
    s = sub.add_parser("serve", help=SUBCOMMANDS["serve"], description=(
        "Serve DNS until SIGTERM (SIGHUP reloads the config). Each flag sets the config "
        "key of the same name (dashes for underscores) and overrides the file."))
    s.add_argument("--config", metavar="FILE", help="YAML config file (flags override it)")
    for flag, (key, many) in FLAGS.items():
        kw: dict[str, Any] = {"dest": key, "default": None, "metavar": _metavar(key),
                              "help": docs.get(key, "") + (" Repeatable." if many else "")}
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
        if key in BOOL_KEYS:
            kw["type"] = _flag_bool
        s.add_argument(flag, **kw)
    s.add_argument("--query-log", dest="query_log", action="store_true", default=None,
                   help="log queries (sampled)")
    s.add_argument("--no-metrics", dest="metrics", action="store_false", default=None,
                   help="count nothing on the query path (/metrics keeps the rest)")
    e = sub.add_parser("explain", help=SUBCOMMANDS["explain"], description=(
        "Ask a running mcdns (over DNS, class CH, type TXT) why NAME answers what it "
        "answers: the policy, the decision and its reason, both sides' health, the sync."))
    e.add_argument("name", help="the name to explain, e.g. web.shop.svc.cluster.local")
    e.add_argument("--server", default="127.0.0.1:5353", metavar="HOST:PORT",
                   help="the mcdns to ask (default: %(default)s, mcdns's default listen)")
    c = sub.add_parser("check-config", help=SUBCOMMANDS["check-config"], description=(
        "Validate a config file, and a state file if given (every object against its "
        "kind's schema); exit 0 with one line, or 2 with one line naming the problem."))
    c.add_argument("file", help="the config file (YAML)")
    c.add_argument("--state", metavar="FILE",
                   help="also validate this state file (default: the config's state key)")
    n = sub.add_parser("setup-interface", help=SUBCOMMANDS["setup-interface"], description=(
        "Node-local mode (the DaemonSet's init container, with NET_ADMIN): put each "
        "address on a dummy interface, created and brought up if missing, or on lo when "
        "the kernel has no dummy link type; an address already on the node is left as it "
        "is. The addresses stay when mcdns stops; --remove takes them away."))
    n.add_argument("--address", action="append", required=True, metavar="IP",
                   help="an address to put in place, e.g. 169.254.20.10. Repeatable.")
    n.add_argument("--interface", default="mcdns0", metavar="NAME",
                   help="the dummy interface to hold them (default: %(default)s)")
    n.add_argument("--remove", action="store_true",
                   help="remove the addresses instead, and the interface once it is empty")
    return p


def _flag_bool(text: str) -> bool:
    """A boolean flag's value: true or false (any case)."""
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return text.lower() == "true"


def setup_interface_cmd(addresses: list[str], interface: str, remove: bool) -> int:
    """Put the node-local addresses in place (or take them away), one line a step."""
    from mcdns.ops.netlink import LocalAddresses, check_interface_name, parse_addresses

    try:
        ips = parse_addresses(addresses)
    except ValueError as e:
        raise ConfigError("--address", str(e)) from None
    try:
        local = LocalAddresses(ips, check_interface_name(interface))
    except ValueError as e:
        raise ConfigError("--interface", str(e)) from None
    try:
        if remove:
            local.remove()
        else:
            local.setup()
    finally:
        for line in local.done:
            print(f"mcdns: {line}", flush=True)
    return 0


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
        if args.command == "setup-interface":
            return setup_interface_cmd(args.address, args.interface, args.remove)
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
    """Serve. With ``workers`` > 1 this first process also serves HTTP and supervises
    ``workers`` - 1 worker processes sharing the DNS sockets (SO_REUSEPORT): each is
    ``mcdns serve`` again with the same flags (``worker_command``), started once this one
    serves, restarted when it dies, stopped with it (mcdns.ops.workers). A process the
    supervisor started (its environment says so) is a worker: DNS only, no HTTP port
    and no Events (the first records them); it exits when the first process does."""
    from mcdns.ops.worker_link import LinkError, WorkerLink

    try:
        link = WorkerLink.from_env()
    except LinkError as e:
        return _fail(str(e), EXIT_USAGE, argparse.Namespace())
    if link is not None:
        if not link.die_with_parent():
            return 0  # the first process is gone already
        return _loop(cfg.replace(http=None, events=False), flags, link=link)
    workers = None
    if cfg.workers > 1:
        from mcdns.ops.workers import Supervisor

        workers = Supervisor(cfg.workers - 1, worker_command(cfg, flags or {}))
    return _loop(cfg, flags, workers=workers)


def worker_command(cfg: Config, flags: dict[str, Any]) -> list[str]:
    """``mcdns serve`` as this process was started (config file, then the flags), with
    the listen addresses and worker count this process runs: a worker started after the
    file changed still shares this process's sockets."""
    argv = [sys.executable, "-m", "mcdns", "serve"]
    if cfg.config_file:
        argv += ["--config", cfg.config_file]
    for flag, (key, many) in FLAGS.items():
        if key in ("listen", "workers") or flags.get(key) is None:
            continue
        for value in flags[key] if many else [flags[key]]:
            argv += [flag, str(value)]
    for hp in cfg.listen:
        argv += ["--listen", str(hp)]
    argv += ["--workers", str(cfg.workers)]
    if flags.get("query_log"):
        argv.append("--query-log")
    if flags.get("metrics") is False:
        argv.append("--no-metrics")
    return argv


def _loop(cfg: Config, flags: dict[str, Any] | None, workers: Supervisor | None = None,
          link: WorkerLink | None = None) -> int:
    from mcdns.app import serve

    try:
        return _run(serve(cfg, flags, workers=workers, link=link))
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
