"""What importing the Kubernetes client costs, bounded; and what the CLI never imports.

``mcdns.kube.client`` registers kubernetes_asyncio's two heavy packages un-executed so
their generated API classes and models (about 860 modules, ~60 MiB here) are never
loaded. That trick depends on the library's package layout: a new release could undo it
silently, so this test measures it in a fresh interpreter, for the version installed,
which the upper bound in pyproject.toml keeps to the releases this test has seen.
``mcdns --version`` and ``--help`` import neither the client nor the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent

# Bounds, with the figures they were set from (kubernetes_asyncio 36.1.0, Python 3.11):
# importing mcdns.kube.client loads 15 kubernetes_asyncio modules and 348 modules in all,
# +28 MiB RSS (aiohttp, yaml and the client's config loaders); the full client package
# loads 859 and 1,232, +63 MiB.
MAX_CLIENT_MODULES = 30
MAX_ALL_MODULES = 500
MAX_RSS_MIB = 40

PROBE = """
import json, os, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before, n = rss(), len(sys.modules)
import {module}
k = [m for m in sys.modules if m.startswith("kubernetes_asyncio")]
print(json.dumps({{"rss": rss() - before, "modules": len(sys.modules) - n, "client": len(k),
    "generated": sorted(m for m in k if m.startswith(("kubernetes_asyncio.client.models.",
                                                        "kubernetes_asyncio.client.api.")))}}))
"""


def _probe(module: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_the_client_import_stays_small() -> None:
    got = _probe("mcdns.kube.client")
    assert got["generated"] == [], "generated API classes or models were imported"
    assert isinstance(got["client"], int) and 0 < got["client"] <= MAX_CLIENT_MODULES
    assert isinstance(got["modules"], int) and got["modules"] <= MAX_ALL_MODULES
    assert isinstance(got["rss"], int) and got["rss"] <= MAX_RSS_MIB * 2**20


def test_the_probe_sees_the_full_client_cost() -> None:
    """The same probe on the whole client shows what the trick saves, so the bounds
    above are bounds on something (the probe is not blind to the generated code)."""
    got = _probe("kubernetes_asyncio.client")
    assert isinstance(got["generated"], list) and len(got["generated"]) > 500
    assert isinstance(got["rss"], int) and got["rss"] > MAX_RSS_MIB * 2**20


def test_the_client_still_works_after_the_trick() -> None:
    """The pieces mcdns uses are the real classes, and the full package still loads on
    demand for other code in the same process."""
    code = ("import asyncio\n"
            "from mcdns.kube.client import ApiClient, Configuration, kube_config\n"
            "c = Configuration(); c.host = 'https://127.0.0.1:1'\n"
            "async def made():\n"
            "    async with ApiClient(c) as api:\n"
            "        return api.configuration.host\n"
            "assert asyncio.run(made()) == 'https://127.0.0.1:1'\n"
            "assert callable(kube_config.load_kube_config)\n"
            "import kubernetes_asyncio.client as full\n"
            "assert full.V1Service.__name__ == 'V1Service'\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert out.strip() == "ok"


def test_the_installed_client_is_within_the_declared_bounds() -> None:
    """pyproject.toml pins kubernetes_asyncio below the next major release; the tests
    above ran on the installed one, which must be inside that range."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    req = next(Requirement(d) for d in deps if Requirement(d).name == "kubernetes_asyncio")
    assert any(s.operator == "<" for s in req.specifier), "no upper bound"
    assert Version(version("kubernetes_asyncio")) in req.specifier


def _imported_by_cli(*argv: str) -> tuple[int, str, set[str]]:
    code = ("import sys\nfrom mcdns.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('\\n'.join(sys.modules), file=sys.stderr)\nsys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout, set(p.stderr.split())


def test_version_and_help_import_neither_the_client_nor_the_server() -> None:
    for argv in (("--version",), ("--help",), ("serve", "--help")):
        rc, out, modules = _imported_by_cli(*argv)
        assert rc == 0, argv
        assert "mcdns" in out, argv
        heavy = sorted(m for m in modules if m.split(".")[0] in (
            "kubernetes_asyncio", "aiohttp", "prometheus_client", "uvloop"))
        assert heavy == [], f"{argv}: {heavy[:5]}"
        assert "mcdns.app" not in modules and "mcdns.kube.client" not in modules


def test_serving_a_state_file_does_not_import_the_client() -> None:
    """The state-file source needs no API client: the server built for it (as
    ``mcdns serve --state`` builds it) leaves kubernetes_asyncio unloaded."""
    code = ("import sys\nfrom mcdns import config\nfrom mcdns.app import App\n"
            "cfg = config.build({'listen': ['127.0.0.1:0'], 'state': sys.argv[1]})\n"
            "App(cfg)\n"
            "print(sorted(m for m in sys.modules if m.startswith('kubernetes_asyncio')))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "config/demo-state.yaml")],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "[]"
