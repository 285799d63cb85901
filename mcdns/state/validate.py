"""Strict schema checks of state-file objects: the check the API server makes of an object
sent with strict field validation (``kubectl apply --validate=strict``), so a typo in a
kind, a field name or a value's type is refused instead of silently ignored.

- Kubernetes kinds: the OpenAPI schema of Kubernetes ``KUBERNETES``
  (``schemas/kubernetes-<version>.json``: kubernetes-validate's strict variant, in which
  every object with properties has no others; descriptions dropped). Every built-in kind
  is known, so a dump that holds Pods or ConfigMaps besides what mcdns reads is checked
  too, not refused.
- The CRDs the multi-cluster implementations install: mcs-api ServiceImport and
  ServiceExport, about-api ClusterProperty, Karmada MultiClusterService
  (``schemas/*.yaml``, each citing its source), checked with their own
  ``openAPIV3Schema`` made strict as the API server reads a structural schema: an object
  has no fields but its properties (unless ``x-kubernetes-preserve-unknown-fields``), a
  ``nullable`` field may be null, and ``metadata`` is an ObjectMeta.

Each kind's schema is compiled once per process, when first met, by fastjsonschema into a
Python function: about 30 us per object, some 20 times what jsonschema takes. Not checked,
as kubernetes-validate does not check them either: formats, CEL rules, and what only the
API server's Go code knows (name syntax, IP syntax: the reducer checks those it reads).
"""

from __future__ import annotations

import difflib
import functools
import json
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # imported when a state file is first checked: the API path never is
    from fastjsonschema import JsonSchemaValueException

KUBERNETES = "1.37"  # the Kubernetes release whose API schema is vendored (see docs)
SCHEMAS = Path(__file__).with_name("schemas")
CRD_FILES = ("mcs-api.yaml", "about-api.yaml", "karmada.yaml")
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
LIST_FIELDS = ("apiVersion", "kind", "metadata", "items")
DRAFT = "http://json-schema.org/draft-07/schema#"
# What a CRD schema may say that the conversion to a strict JSON schema understands
# (tests/test_statefile_strict.py checks the vendored files use nothing else).
CRD_KEYWORDS = frozenset({
    "type", "properties", "items", "required", "enum", "description", "format",
    "maxItems", "minItems", "maxLength", "minLength", "pattern", "minimum", "maximum",
    "additionalProperties", "nullable", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
})

Validator = Callable[[Any], Any]


class _Short(reprlib.Repr):
    """Values in messages: short (a YAML alias can make one enormous), null and booleans
    spelled as in YAML."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlist = self.maxdict = 4
        self.maxlevel = 2

    def repr1(self, x: Any, level: int) -> str:
        if x is None or isinstance(x, bool):
            return json.dumps(x)
        return super().repr1(x, level)


_short = _Short()


@functools.cache
def kubernetes_defs() -> dict[str, Any]:
    """The vendored Kubernetes definitions, by name (``io.k8s.api.core.v1.Service``)."""
    doc = json.loads((SCHEMAS / f"kubernetes-{KUBERNETES}.json").read_text(encoding="utf-8"))
    defs: dict[str, Any] = doc["$defs"]
    return defs


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) to the strict schema of each served version of a vendored CRD."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name in CRD_FILES:
        for crd in yaml.safe_load_all((SCHEMAS / name).read_text(encoding="utf-8")):
            spec = crd["spec"]
            for v in spec["versions"]:
                if v.get("served", True):
                    schema = strict_crd_schema(v["schema"]["openAPIV3Schema"])
                    out[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = schema
    return out


def strict_crd_schema(node: Mapping[str, Any], root: bool = True) -> dict[str, Any]:
    """A CRD's structural schema as a JSON schema the API server's way (module docstring)."""
    out = {k: v for k, v in node.items() if k != "description"}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if isinstance(out.get("properties"), Mapping):
        out["properties"] = {k: strict_crd_schema(v, False)
                             for k, v in out["properties"].items()}
        if root:
            out["properties"]["metadata"] = {"$ref": f"#/$defs/{OBJECT_META}"}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), Mapping):
            out[key] = strict_crd_schema(out[key], False)
    types = out.get("type")
    if ("object" in (types if isinstance(types, list) else [types])
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def known_kinds() -> dict[tuple[str, str], str | dict[str, Any]]:
    """(apiVersion, kind) to a Kubernetes definition's name or a CRD's strict schema."""
    out: dict[tuple[str, str], str | dict[str, Any]] = {}
    for name, d in kubernetes_defs().items():
        for gvk in d.get("x-kubernetes-group-version-kind", ()):
            group, version = gvk["group"], gvk["version"]
            out[(f"{group}/{version}" if group else version, gvk["kind"])] = name
    out.update(crd_schemas())
    return out


@functools.cache
def _compiled(api: str, kind: str) -> Validator | None:
    schema = known_kinds().get((api, kind))
    if schema is None:
        return None
    return _compile(f"#/$defs/{schema}" if isinstance(schema, str) else schema)


def _compile(schema: str | dict[str, Any]) -> Validator:
    """A validator for a definition (``#/$defs/<name>``) or a schema that may refer to the
    Kubernetes definitions; fail-fast, and it never changes the object (no defaults)."""
    defs = kubernetes_defs()
    if not isinstance(schema, str):  # by reference too: compiling a schema beside the
        defs = {**defs, "mcdns.crd": schema}  # definitions would walk all of them (slow)
        schema = "#/$defs/mcdns.crd"
    doc = {"$schema": DRAFT, "$defs": defs, "$ref": schema}
    import fastjsonschema

    return fastjsonschema.compile(doc, use_default=False, use_formats=False)


def _schema_error() -> type[JsonSchemaValueException]:
    from fastjsonschema import JsonSchemaValueException

    return JsonSchemaValueException


@functools.cache
def _list_meta() -> Validator:
    return _compile(f"#/$defs/{LIST_META}")


def label(obj: Mapping[str, Any]) -> str:
    """How a message names an object: ``Service default/web``, ``Namespace shop``."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    ns, name = meta.get("namespace"), meta.get("name")
    name = _short.repr(name) if name is not None and not isinstance(name, str) else name
    where = f"{ns}/{name or '?'}" if isinstance(ns, str) and ns else str(name or "?")
    kind = obj.get("kind")
    return f"{kind if isinstance(kind, str) and kind else 'object'} {where}"


def problem(obj: Mapping[str, Any]) -> str | None:
    """The first problem the schema of ``obj``'s kind finds in it, or None."""
    api, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(kind, str) or not kind:
        return _not_a_name("kind", kind)
    if not isinstance(api, str) or not api:
        return _not_a_name("apiVersion", api)
    validate = _compiled(api, kind)
    if validate is None:
        return _unknown(api, kind)
    try:
        validate(obj)
    except _schema_error() as e:
        return message(e)
    return None


def _not_a_name(key: str, value: Any) -> str:
    if value is None or value == "":
        return f"{key}: missing"
    return f"{key}: {_short.repr(value)} is not of type 'string'"


def list_problem(doc: Mapping[str, Any]) -> str | None:
    """The first problem of a ``kind: List`` wrapper (``kubectl get -o yaml`` prints one):
    a field other than its four, a kind that is not a list's, or bad list metadata."""
    extra = sorted(str(k) for k in doc if k not in LIST_FIELDS)
    if extra:
        hint = difflib.get_close_matches(extra[0], LIST_FIELDS, 1)
        return (f"{extra[0]}: unknown field of a List"
                + (f" (did you mean {hint[0]}?)" if hint else ""))
    if not isinstance(doc.get("items"), list):
        return f"items: {_short.repr(doc.get('items'))} is not of type 'array'"
    kind = doc.get("kind")
    if kind is not None and not (isinstance(kind, str) and kind.endswith("List")):
        return f"kind: {_short.repr(kind)} has items but is not a List"
    try:
        _list_meta()(doc.get("metadata"))
    except _schema_error() as e:
        return message(e, "metadata")
    return None


def is_known_kind(kind: Any) -> bool:
    """Whether any vendored schema has a kind of this name (in any API version)."""
    return isinstance(kind, str) and kind in _kind_names()


@functools.cache
def _kind_names() -> frozenset[str]:
    return frozenset(k for _, k in known_kinds())


def problems(objs: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, str, str]]:
    """(index from 1, label, problem) of every object the schema refuses, in order."""
    for i, obj in enumerate(objs, 1):
        found = problem(obj)
        if found is not None:
            yield i, label(obj), found


def _unknown(api: str, kind: str) -> str:
    known = known_kinds()
    served = sorted(a for a, k in known if k == kind)
    if served:
        return (f"kind {kind} is not served as {api} (Kubernetes {KUBERNETES} and the "
                f"multi-cluster CRDs serve it as {', '.join(served)})")
    same_api = sorted({k for a, k in known if a == api})
    hint = difflib.get_close_matches(kind, same_api or sorted({k for _, k in known}), 1)
    where = f"{api}" if same_api else f"{api}, an API group mcdns does not know"
    return (f"unknown kind {kind!r} in {where}"
            + (f" (did you mean {hint[0]}?)" if hint else ""))


def message(e: JsonSchemaValueException, root: str = "") -> str:
    """One readable line for a schema failure: ``spec.ports[0].port: 'http' is not of
    type 'integer'``. Values are shortened (a YAML alias can make them enormous)."""
    path = (e.name or "data").removeprefix("data").lstrip(".")
    path = f"{root}.{path}" if root and path else root or path
    at = f"{path}: " if path else ""
    rule, wanted, value, schema = e.rule, e.rule_definition, e.value, e.definition or {}
    known = list(schema.get("properties") or ())
    extra = sorted(str(k) for k in value if k not in known) if isinstance(value, Mapping) else []
    if extra and schema.get("additionalProperties") is False and rule in (
            "additionalProperties", "required"):  # "adressType" makes addressType missing
        hint = difflib.get_close_matches(extra[0], known, 1)
        return (f"{path + '.' if path else ''}{extra[0]}: unknown field"
                + (f" (did you mean {hint[0]}?)" if hint else ""))
    if rule == "type":
        return f"{at}{_short.repr(value)} is not of type {_types(wanted)}"
    if rule in ("oneOf", "anyOf") and isinstance(wanted, list) and all(
            isinstance(s, Mapping) and set(s) == {"type"} for s in wanted):
        return f"{at}{_short.repr(value)} is not of type {_types([s['type'] for s in wanted])}"
    if rule == "required" and isinstance(wanted, list) and isinstance(value, Mapping):
        missing = [str(r) for r in wanted if r not in value] or ["?"]
        return f"{at}missing required field {missing[0]!r}"
    if rule == "enum" and isinstance(wanted, list):
        return f"{at}{_short.repr(value)} is not one of {', '.join(map(repr, wanted))}"
    text = e.message.removeprefix(e.name or "").strip()
    return f"{at}{_short.repr(value)} {text}" if text.startswith("must") else at + text


def _types(wanted: Any) -> str:
    """'integer' from "integer" or ["integer", "null"]; 'string' or 'integer' for two."""
    flat: list[str] = []
    for t in wanted if isinstance(wanted, list) else [wanted]:
        flat.extend(t if isinstance(t, list) else [t])
    shown = [repr(str(t)) for t in dict.fromkeys(flat) if t != "null"] or ["'null'"]
    return " or ".join(shown)


def expanded_size(doc: Any, limit: int) -> int:
    """How many values ``doc`` holds counting an alias's target again at every use (what
    a schema check walks), computed once per distinct value; stops past ``limit``, and a
    value that contains itself counts as ``limit + 1``."""
    if not isinstance(doc, list | dict):
        return 1
    sizes: dict[int, int] = {}  # id -> size; -1 while its contents are being counted
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        node, counted = stack.pop()
        kids = list(node.values()) if isinstance(node, dict) else node
        if counted:
            n = 1 + sum(sizes[id(k)] if isinstance(k, list | dict) else 1 for k in kids)
            if n > limit:
                return n
            sizes[id(node)] = n
        elif id(node) in sizes:
            if sizes[id(node)] < 0:
                return limit + 1
        else:
            sizes[id(node)] = -1
            stack.append((node, True))
            stack.extend((k, False) for k in kids if isinstance(k, list | dict))
    return sizes.get(id(doc), 1)
