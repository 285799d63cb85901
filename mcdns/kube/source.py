"""The Kubernetes API as a source of the store: one watcher per resource (and namespace).

``KubeSource(cfg, store).run()`` is the whole API side of mcdns: it loads the client
config (kubeconfig or in-cluster), starts the watchers, and batches their changes into
store commits, one per turn of the event loop, so that events arriving together are
compiled together and a single event reaches the answers within that turn.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import yaml

from mcdns.config import Config, yaml_problem
from mcdns.kube.client import ApiClient, Configuration, kube_config
from mcdns.kube.resources import NAMESPACES, Resource, plan
from mcdns.kube.settings import ClientConfigError, KubeStats, WatchSettings
from mcdns.kube.watcher import Watcher
from mcdns.state.store import Store

log = logging.getLogger("mcdns.kube")


async def load_client_config(cfg: Config) -> Any:
    """Client configuration from ``cfg.kubeconfig``, else the pod's service account."""
    conf = Configuration()
    if cfg.kubeconfig:  # read it first: the loader's own errors are tracebacks or riddles
        _check_kubeconfig(cfg.kubeconfig)
    try:
        if cfg.kubeconfig:
            await kube_config.load_kube_config(config_file=cfg.kubeconfig,
                                               client_configuration=conf,
                                               persist_config=False)
        else:
            kube_config.load_incluster_config(client_configuration=conf)
    except (kube_config.ConfigException, OSError, ValueError) as e:
        where = cfg.kubeconfig or "in-cluster service account"
        raise ClientConfigError(f"cannot load Kubernetes client config ({where}): {e}") from e
    return conf


def _check_kubeconfig(path: str) -> None:
    """One line for the ways a kubeconfig file cannot be used at all."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise ClientConfigError(f"cannot read kubeconfig {path}: no such file") from None
    except PermissionError:
        raise ClientConfigError(f"cannot read kubeconfig {path}: permission denied") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ClientConfigError(f"cannot read kubeconfig {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ClientConfigError(f"cannot read kubeconfig {path}: not valid YAML: "
                                f"{yaml_problem(e)}") from None
    if not isinstance(doc, dict):
        raise ClientConfigError(f"cannot read kubeconfig {path}: not a kubeconfig "
                                "(a mapping with clusters, users and contexts)")
    if not doc.get("current-context"):
        raise ClientConfigError(f"kubeconfig {path} names no current-context: set one "
                                "with `kubectl config use-context NAME`")




class KubeSource:
    """Feeds ``store`` from the API server. ``await run()`` until cancelled."""

    def __init__(self, cfg: Config, store: Store, settings: WatchSettings | None = None,
                 client_config: Any = None) -> None:
        self.cfg = cfg
        self.store = store
        self.settings = settings or WatchSettings()
        self.stats = KubeStats()
        self._client_config = client_config
        self._commit_handle: asyncio.Handle | None = None
        self.watchers = [
            Watcher(res, ns, store, self.settings, self.stats, self._schedule_commit,
                    cfg.namespaces if res is NAMESPACES else ())
            for res, ns in plan(cfg)]
        for w in self.watchers:
            if w.name not in store.synced_sources:
                store.mark_synced(w.name, False)

    @property
    def sources(self) -> tuple[str, ...]:
        """The store source names this source marks synced (one per watcher)."""
        return tuple(w.name for w in self.watchers)

    def version_of(self, res: Resource) -> str | None:
        """The version of ``res`` the watchers use (None: not served, or not known yet)."""
        return next((w.version for w in self.watchers if w.res is res and w.version), None)

    async def run(self) -> None:
        """Watch everything until cancelled; the HTTP client is closed on the way out."""
        conf = self._client_config or await load_client_config(self.cfg)
        async with ApiClient(conf) as api:
            for w in self.watchers:
                w.api = api
            log.info("watching %(resources)s at %(host)s",
                     {"resources": ", ".join(self.sources), "host": conf.host})
            try:
                async with asyncio.TaskGroup() as tg:
                    for w in self.watchers:
                        tg.create_task(w.forever(), name=f"watch {w.name}")
            finally:
                if self._commit_handle is not None:
                    self._commit_handle.cancel()
                    self._commit()

    def _schedule_commit(self) -> None:
        """Commit at the end of this turn of the loop. Until every resource has been
        listed once nothing is committed: the first answers are compiled once, from the
        whole first list, instead of once per resource (nothing is served before then)."""
        if self._commit_handle is None and self.store.synced:
            self._commit_handle = asyncio.get_running_loop().call_soon(self._commit)

    def _commit(self) -> None:
        self._commit_handle = None
        self.store.commit()
