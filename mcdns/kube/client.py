"""kubernetes_asyncio's HTTP client and config loaders, without its 50 MB of generated code.

Importing ``kubernetes_asyncio`` (or any submodule) runs its package ``__init__``, which
imports every generated API class and every model: about 50 MB of RSS, against a memory
budget of 114 MB for a 10,000-service cluster. mcdns needs only ``Configuration``,
``ApiClient`` (raw JSON requests) and the config loaders. So the two heavy packages are
registered un-executed: their submodules import normally, and the first access to a
name only the full ``__init__`` defines runs it then, so other code using the full
client still works (it just pays the memory).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

_HEAVY = ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.models")


def _lazy_package(name: str) -> None:
    """Put package ``name`` in sys.modules with its ``__init__`` deferred."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(name)
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        try:  # a submodule ("from package import submodule"): import just that
            return importlib.import_module(f"{name}.{attr}")
        except ModuleNotFoundError as e:
            if e.name != f"{name}.{attr}":
                raise
        module.__dict__.pop("__getattr__", None)
        loader.exec_module(module)
        return getattr(module, attr)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _load() -> tuple[ModuleType, ModuleType, ModuleType]:
    if not any(name in sys.modules for name in _HEAVY):
        for name in _HEAVY:
            _lazy_package(name)
    configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
    api_client = importlib.import_module("kubernetes_asyncio.client.api_client")
    client = sys.modules["kubernetes_asyncio.client"]
    for mod, attr in ((configuration, "Configuration"), (api_client, "ApiClient")):
        if attr not in client.__dict__:
            client.__dict__[attr] = getattr(mod, attr)  # what kube_config imports
    config = importlib.import_module("kubernetes_asyncio.config")
    return configuration, api_client, config


_configuration, _api_client, kube_config = _load()
Configuration: Any = _configuration.Configuration
ApiClient: Any = _api_client.ApiClient
