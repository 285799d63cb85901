"""The container image, built and run for real, with no daemon: ``make image``, ``make image-test``.

``python3 tests/image.py build`` builds the Dockerfile with buildah (``buildah bud
--isolation chroot``) into buildah's local storage, tagged ``localhost/mcdns:<version>``
and ``localhost/mcdns:dev``, and prints (and writes to build/image.json) the build time
and the image size. The base, ``--base``:

- ``registry``: ``docker.io/library/python:3.11-slim-bookworm``, the Dockerfile's default;
- ``debian``: a stand-in made here from Debian bookworm's packages with mmdebstrap (python3
  3.11, pip/setuptools/wheel from Debian's wheels in /usr/local as in the official image,
  no ``EXTERNALLY-MANAGED`` marker, and this machine's CA bundle and a pip.conf naming it,
  so the build stage's pip reaches PyPI through this network's TLS proxy). Built once:
  the recipe's digest is a label on the base, and a base whose label matches is reused;
- ``auto`` (the default): ``registry`` when it can be pulled, else ``debian``;
- or any other image reference, used as it is.

``python3 tests/image.py test`` runs the built image the way a container runtime does:
its root filesystem (``buildah mount``) as the read-only root of a runc container, its
entrypoint, environment and user from the image's config, no capabilities, no new
privileges, its own PID and network namespaces, a tmpfs on /tmp (the chart's emptyDir),
and config/demo-state.yaml mounted read-only next to the image's own config. It checks
``mcdns --version``; that ``serve`` with the image's default config plus the state file
answers ``serve.default.svc.cluster.local`` with 10.13.187.164 over UDP and TCP on port
5353 and ``/ready`` on 9153 with 200 (dig and the HTTP client run inside the container's
network namespace, so nothing on the host's ports can collide); that the process runs as
the image's numeric user 65532 with no capabilities; that writes to the root filesystem
fail with EROFS while /tmp is writable; and that SIGTERM turns /ready to 503 at once and
ends the process with status 0. It prints one line per check and a closing
``image-test: N passed, N failed``; the exit status is non-zero when any check failed.

Standard library only: it runs with the machine's python3, without the project's venv.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
RECORD = BUILD / "image.json"
IMAGE = "localhost/mcdns"
REGISTRY_BASE = "docker.io/library/python:3.11-slim-bookworm"
DEBIAN_BASE = "localhost/mcdns-python-base:3.11-bookworm"
DEBIAN_MIRROR = os.environ.get("MCDNS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
RECIPE_LABEL = "io.mcdns.base.recipe"
# What the build context holds (.dockerignore); a change to one of these, uncommitted,
# marks the image's revision label "-dirty".
CONTEXT = ["Dockerfile", ".dockerignore", "requirements/image.lock", "pyproject.toml",
           "README.md", "mcdns"]

STATE = ROOT / "config" / "demo-state.yaml"
STATE_IN_IMAGE = "/etc/mcdns/demo-state.yaml"
NAME = "serve.default.svc.cluster.local"
EXPECTED_IP = "10.13.187.164"
DNS_PORT = 5353
HTTP_PORT = 9153
USER = (65532, 65532)


def log(msg: str) -> None:
    print(f"[image] {msg}", flush=True)


def run(args: list[str], *, timeout: float = 600, check: bool = True,
        quiet: bool = False) -> subprocess.CompletedProcess[str]:
    if not quiet:
        log("$ " + shlex.join(args))
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"[image] failed ({done.returncode}): {shlex.join(args)}")
    return done


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"[image] missing {', '.join(missing)}: `make image` installs them")


def version() -> str:
    text = (ROOT / "mcdns" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if match is None:
        raise SystemExit("[image] no __version__ in mcdns/__init__.py")
    return match.group(1)


def revision() -> str:
    head = run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=False, quiet=True)
    if head.returncode != 0:
        return "unknown"
    dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--", *CONTEXT],
                check=False, quiet=True).stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def image_exists(ref: str) -> bool:
    return run(["buildah", "inspect", "--type", "image", ref], check=False, quiet=True
               ).returncode == 0


def image_config(ref: str) -> dict[str, Any]:
    out = run(["buildah", "inspect", "--type", "image", ref], quiet=True).stdout
    config: dict[str, Any] = json.loads(out)["OCIv1"].get("config") or {}
    return config


# ---- the Debian-built stand-in base ---------------------------------------------------

def ca_bundle() -> Path:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SystemExit("[image] no CA bundle found (PIP_CERT, SSL_CERT_FILE)")


def debian_recipe(tarball: Path) -> list[str]:
    """The mmdebstrap command line that makes the base's root filesystem."""
    ca = shlex.quote(str(ca_bundle()))
    hooks = [
        # pip refuses to install into a Python that carries the marker (PEP 668).
        'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
        # pip, setuptools and wheel into /usr/local from Debian's own wheels, as the
        # official image has them there (so the Dockerfile's `pip uninstall` works);
        # then the wheel packages go.
        "chroot \"$1\" sh -c 'set -- /usr/share/python-wheels/pip-*.whl && python3 \"$1/pip\""
        " install --no-cache-dir --no-index --find-links=/usr/share/python-wheels"
        " pip setuptools wheel'",
        'chroot "$1" dpkg --purge python3-pip-whl python3-setuptools-whl python3-wheel-whl',
        # This machine's CA bundle (its network intercepts TLS), and pip told to use it:
        # pip's own certifi bundle does not know this network's CA.
        f'cp {ca} "$1/etc/ssl/certs/ca-certificates.crt"',
        "printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > \"$1/etc/pip.conf\"",
        'rm -f "$1/etc/hostname" && : > "$1/etc/resolv.conf"',
    ]
    return [
        "mmdebstrap", "--mode=root", "--variant=minbase",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        "--include=python3,python-is-python3,ca-certificates,"
        "python3-pip-whl,python3-setuptools-whl,python3-wheel-whl",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        *[f"--customize-hook={hook}" for hook in hooks],
        "bookworm", str(tarball), DEBIAN_MIRROR,
    ]


def recipe_digest() -> str:
    """What the base is made of: the recipe and the CA bundle copied into it."""
    h = hashlib.sha256()
    h.update(json.dumps(debian_recipe(Path("base.tar"))).encode())
    h.update(ca_bundle().read_bytes())
    return h.hexdigest()[:16]


def debian_base(rebuild: bool) -> str:
    digest = recipe_digest()
    if not rebuild and image_exists(DEBIAN_BASE):
        labels = image_config(DEBIAN_BASE).get("Labels") or {}
        if labels.get(RECIPE_LABEL) == digest:
            log(f"Debian base {DEBIAN_BASE} is up to date (recipe {digest}): reused")
            return DEBIAN_BASE
        log(f"Debian base {DEBIAN_BASE} has another recipe: rebuilt")
    need("mmdebstrap")
    started = time.monotonic()
    BUILD.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD, prefix="image-base.") as tmp:
        tarball = Path(tmp) / "base.tar"
        log(f"building the Debian base with mmdebstrap from {DEBIAN_MIRROR} (about a minute)")
        run(debian_recipe(tarball), timeout=1800)
        ctr = run(["buildah", "from", "scratch"], quiet=True).stdout.strip()
        try:
            run(["buildah", "add", "--quiet", ctr, str(tarball), "/"])
            run(["buildah", "config",
                 "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "--env", "LANG=C.UTF-8",
                 "--cmd", "python3",
                 "--label", f"{RECIPE_LABEL}={digest}",
                 "--label", "org.opencontainers.image.description=Debian bookworm python3 "
                 "(mmdebstrap), a stand-in for python:3.11-slim-bookworm",
                 ctr])
            run(["buildah", "commit", "--quiet", "--rm", ctr, DEBIAN_BASE])
        except BaseException:
            run(["buildah", "rm", ctr], check=False, quiet=True)
            raise
    log(f"Debian base built in {time.monotonic() - started:.0f} s")
    return DEBIAN_BASE


def registry_base() -> bool:
    if image_exists(REGISTRY_BASE):
        return True
    log(f"pulling {REGISTRY_BASE}")
    try:
        pulled = run(["buildah", "pull", "--quiet", "--retry", "1", REGISTRY_BASE],
                     timeout=600, check=False)
    except subprocess.TimeoutExpired:
        log("pull timed out")
        return False
    if pulled.returncode != 0:
        log("cannot pull it: " + (pulled.stderr.strip().splitlines() or ["?"])[-1])
    return pulled.returncode == 0


def choose_base(base: str, rebuild: bool) -> tuple[str, str]:
    """(kind, image reference) of the base to build on."""
    if base == "registry":
        if not registry_base():
            raise SystemExit(f"[image] {REGISTRY_BASE} cannot be pulled (try --base debian)")
        return "registry", REGISTRY_BASE
    if base == "auto":
        if registry_base():
            return "registry", REGISTRY_BASE
        log("falling back to the Debian-built base")
        return "debian", debian_base(rebuild)
    if base == "debian":
        return "debian", debian_base(rebuild)
    return "given", base


def compressed_size(ref: str) -> int:
    """Bytes a registry would store: the image pushed as an OCI layout, layers gzipped."""
    with tempfile.TemporaryDirectory(dir=BUILD, prefix="image-oci.") as tmp:
        run(["buildah", "push", "--quiet", "--compression-format", "gzip", ref, f"oci:{tmp}"],
            quiet=True)
        return sum(p.stat().st_size for p in (Path(tmp) / "blobs").rglob("*") if p.is_file())


def build(args: argparse.Namespace) -> int:
    need("buildah")
    BUILD.mkdir(exist_ok=True)
    ver, rev = version(), revision()
    started = time.monotonic()
    kind, base = choose_base(args.base, args.rebuild_base)
    base_seconds = time.monotonic() - started
    tags = [f"{IMAGE}:{ver}", f"{IMAGE}:dev"]
    bud = ["buildah", "bud", "--isolation", "chroot", "--network", "host", "--layers",
           "--file", str(ROOT / "Dockerfile"),
           "--build-arg", f"PYTHON_IMAGE={base}",
           "--build-arg", f"VERSION={ver}", "--build-arg", f"REVISION={rev}"]
    for tag in tags:
        bud += ["--tag", tag]
    bud.append(str(ROOT))
    log("$ " + shlex.join(bud))
    started = time.monotonic()
    done = subprocess.run(bud, timeout=3600)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"[image] buildah bud failed ({done.returncode})")
    size = json.loads(run(["buildah", "images", "--json", tags[0]], quiet=True).stdout)[0]
    record = {
        "image": tags, "base": base, "base_kind": kind, "revision": rev,
        "base_seconds": round(base_seconds, 1), "build_seconds": round(seconds, 1),
        "size": size["size"], "compressed_bytes": compressed_size(tags[0]),
        "id": size["id"], "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RECORD.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log(f"built {', '.join(tags)} on {base} ({kind} base): image build {seconds:.0f} s "
        f"(+ {base_seconds:.0f} s for the base), {size['size']} "
        f"({record['compressed_bytes'] / 1e6:.0f} MB compressed); {RECORD.relative_to(ROOT)}")
    return 0


# ---- running the image under runc ------------------------------------------------------

class Container:
    """The image's root filesystem as a runc container's read-only root."""

    def __init__(self, image: str, name: str, args: list[str],
                 mounts: list[dict[str, Any]], workdir: Path) -> None:
        self.image, self.name, self.workdir = image, name, workdir
        self.config = image_config(image)
        self.ctr = run(["buildah", "from", "--pull=never", "--quiet", image],
                       quiet=True).stdout.strip()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{name}.log"
        try:
            rootfs = run(["buildah", "mount", self.ctr], quiet=True).stdout.strip()
            self.bundle = workdir / name
            self.bundle.mkdir()
            run(["runc", "spec", "--bundle", str(self.bundle)], quiet=True)
            spec_path = self.bundle / "config.json"
            spec = json.loads(spec_path.read_text())
            spec["root"] = {"path": rootfs, "readonly": True}
            spec["process"] = self.process(args)
            spec["hostname"] = "mcdns"
            spec["mounts"] += mounts
            spec_path.write_text(json.dumps(spec, indent=1))
        except BaseException:
            self.remove()
            raise

    def user(self) -> tuple[int, int]:
        uid, _, gid = str(self.config.get("User") or "0").partition(":")
        if not uid.isdigit() or not (gid or "0").isdigit():
            raise SystemExit(f"[image] the image's user {self.config.get('User')!r} is not "
                             "numeric (runAsNonRoot cannot verify it)")
        return int(uid), int(gid or 0)

    def process(self, args: list[str]) -> dict[str, Any]:
        uid, gid = self.user()
        entry = list(self.config.get("Entrypoint") or [])
        return {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": entry + (args if args else list(self.config.get("Cmd") or [])),
            "env": list(self.config.get("Env") or []),
            "cwd": self.config.get("WorkingDir") or "/",
            # The chart's securityContext: all capabilities dropped, no escalation.
            "capabilities": {k: [] for k in
                             ("bounding", "effective", "permitted", "inheritable", "ambient")},
            "noNewPrivileges": True,
        }

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["runc", "run", "--bundle", str(self.bundle), self.name],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def run_to_end(self, timeout: float = 60) -> tuple[int, str]:
        self.start()
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        return code, self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pid(self) -> int:
        state = run(["runc", "state", self.name], check=False, quiet=True)
        if state.returncode != 0:
            return 0
        return int(json.loads(state.stdout).get("pid") or 0)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def in_netns(self, args: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """A host program (dig, python) run inside the container's network namespace."""
        return subprocess.run(["nsenter", f"--net=/proc/{self.pid()}/ns/net", "--", *args],
                              capture_output=True, text=True, timeout=timeout)

    def exec(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runc", "exec", self.name, *args],
                              capture_output=True, text=True, timeout=30)

    def stop(self, signal: str = "TERM", timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            run(["runc", "kill", self.name, signal], check=False, quiet=True)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                run(["runc", "kill", self.name, "KILL"], check=False, quiet=True)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("KILL", timeout=5)
        run(["runc", "delete", "--force", self.name], check=False, quiet=True)
        run(["buildah", "umount", self.ctr], check=False, quiet=True)
        run(["buildah", "rm", self.ctr], check=False, quiet=True)


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok    {what}" + (f": {detail}" if detail else ""), flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok


def http_status(ctr: Container, path: str) -> int:
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:{HTTP_PORT}{path}', timeout=3)\n"
            "    print(r.status)\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"
            "except OSError:\n"
            "    print(0)\n")
    done = ctr.in_netns([sys.executable, "-c", code])
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


def dig(ctr: Container, *extra: str) -> str:
    done = ctr.in_netns(["dig", "@127.0.0.1", "-p", str(DNS_PORT), "+time=2", "+tries=2",
                         *extra, NAME, "A"])
    return done.stdout


def status_fields(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if key in ("CapEff", "CapPrm", "NoNewPrivs") else \
            value.strip()
    return fields


def root_mount_options(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        parts = line.split()
        if parts[4] == "/":
            return parts[5].split(",")
    return []


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


PROBE = """
import errno, os
for path in ("/probe", "/etc/mcdns/probe", "/usr/local/lib/probe"):
    try:
        open(path, "w").close()
        print(path, "WRITABLE")
    except OSError as e:
        print(path, errno.errorcode.get(e.errno, e.errno))
with open("/tmp/probe", "w") as f:
    f.write("x")
print("/tmp/probe", "written")
"""


@contextlib.contextmanager
def container(image: str, name: str, args: list[str], mounts: list[dict[str, Any]],
              workdir: Path) -> Iterator[Container]:
    ctr = Container(image, name, args, mounts, workdir)
    try:
        yield ctr
    finally:
        ctr.remove()


def image_test(args: argparse.Namespace) -> int:
    need("buildah", "runc", "dig", "nsenter")
    image = args.image
    if not image_exists(image):
        raise SystemExit(f"[image] no image {image} in buildah's storage: run `make image`")
    checks = Checks()
    config = image_config(image)
    labels = config.get("Labels") or {}
    ver = version()
    log(f"testing {image} (revision {labels.get('org.opencontainers.image.revision')}, "
        f"base {labels.get('org.opencontainers.image.base.name')})")
    checks.check("image config: numeric non-root user",
                 config.get("User") == f"{USER[0]}:{USER[1]}", repr(config.get("User")))
    checks.check("image config: entrypoint", config.get("Entrypoint") == ["mcdns"],
                 repr(config.get("Entrypoint")))
    with tempfile.TemporaryDirectory(prefix="mcdns-image-test.") as tmp:
        work = Path(tmp)
        with container(image, f"mcdns-version-{os.getpid()}", ["--version"], [], work) as ctr:
            code, out = ctr.run_to_end()
            checks.check("mcdns --version", code == 0 and out.strip() == f"mcdns {ver}",
                         f"exit {code}, {out.strip()!r}")
        state_mount = {"destination": STATE_IN_IMAGE, "type": "bind",
                       "source": str(STATE), "options": ["rbind", "ro"]}
        tmpfs = {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "nodev", "noexec", "size=16m", "mode=1777"]}
        serve_args = ["serve", "--config", "/etc/mcdns/mcdns.yaml", "--state", STATE_IN_IMAGE]
        name = f"mcdns-serve-{os.getpid()}"
        with container(image, name, serve_args, [tmpfs, state_mount], work) as ctr:
            log("$ runc run " + name + ": " + shlex.join(ctr.process(serve_args)["args"]))
            ctr.start()
            ready = wait_for(lambda: not ctr.alive() or (ctr.pid() > 0 and
                                                         http_status(ctr, "/ready") == 200), 60)
            ready = ready and ctr.alive()
            if not checks.check(f"/ready on {HTTP_PORT} answers 200", ready):
                ctr.stop()
                print(ctr.output()[-4000:])
                return finish(checks)
            out = ctr.output()
            started = re.search(r"mcdns started .*", out)
            checks.check("listens on all addresses (the image's default config)",
                         started is not None and f"0.0.0.0:{DNS_PORT}" in started.group(0),
                         started.group(0)[:200] if started else out[-500:])
            checks.check("/health answers 200", http_status(ctr, "/health") == 200)
            for proto, extra in (("UDP", []), ("TCP", ["+tcp"])):
                answer = dig(ctr, *extra)
                short = [line.split()[-1] for line in answer.splitlines()
                         if line.startswith(NAME + ".") and "\tA\t" in line]
                checks.check(f"dig @127.0.0.1 -p {DNS_PORT} {NAME} ({proto}) -> {EXPECTED_IP}",
                             short == [EXPECTED_IP] and "status: NOERROR" in answer,
                             " ".join(short) or answer[-300:])
            pid = ctr.pid()
            fields = status_fields(pid)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            checks.check("the serving process is mcdns",
                         any(b"mcdns" in part for part in cmdline[:2]) and b"serve" in cmdline,
                         " ".join(p.decode() for p in cmdline if p)[:120])
            want = f"{USER[0]}\t{USER[0]}\t{USER[0]}\t{USER[0]}"
            checks.check(f"runs as uid {USER[0]}", fields.get("Uid") == want,
                         "Uid " + fields.get("Uid", "?").replace("\t", " "))
            want = f"{USER[1]}\t{USER[1]}\t{USER[1]}\t{USER[1]}"
            checks.check(f"runs as gid {USER[1]}", fields.get("Gid") == want,
                         "Gid " + fields.get("Gid", "?").replace("\t", " "))
            checks.check("no capabilities, no new privileges",
                         int(fields.get("CapEff", "1"), 16) == 0
                         and int(fields.get("CapPrm", "1"), 16) == 0
                         and fields.get("NoNewPrivs") == "1",
                         f"CapEff {fields.get('CapEff')} NoNewPrivs {fields.get('NoNewPrivs')}")
            options = root_mount_options(pid)
            checks.check("root filesystem mounted read-only", "ro" in options,
                         ",".join(options[:2]))
            probe = ctr.exec(["python", "-c", PROBE])
            lines = dict(line.split(" ", 1) for line in probe.stdout.splitlines() if " " in line)
            checks.check("writes to / fail with EROFS, /tmp is writable",
                         probe.returncode == 0
                         and [lines.get(p) for p in ("/probe", "/etc/mcdns/probe",
                                                     "/usr/local/lib/probe")] == ["EROFS"] * 3
                         and lines.get("/tmp/probe") == "written",
                         (probe.stdout + probe.stderr).strip().replace("\n", "; "))
            run(["runc", "kill", name, "TERM"], check=False, quiet=True)
            turned = wait_for(lambda: http_status(ctr, "/ready") != 200, 3)
            still = EXPECTED_IP in dig(ctr)
            checks.check("SIGTERM: /ready stops answering 200 at once, DNS still answers",
                         turned and still, f"ready turned: {turned}, DNS answers: {still}")
            code = ctr.stop(timeout=30)
            checks.check("SIGTERM: exits 0", code == 0, f"exit status {code}")
            if checks.failed:
                print(ctr.output()[-4000:])
    return finish(checks)


def finish(checks: Checks) -> int:
    print(f"image-test: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the image with buildah")
    b.add_argument("--base", default="auto",
                   help="auto | registry | debian | an image reference (default: auto)")
    b.add_argument("--rebuild-base", action="store_true",
                   help="rebuild the Debian base even when its recipe is unchanged")
    t = sub.add_parser("test", help="run the built image and check that it serves")
    t.add_argument("--image", default=f"{IMAGE}:dev")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("[image] buildah --isolation chroot, mmdebstrap and runc need root")
    return build(args) if args.command == "build" else image_test(args)


if __name__ == "__main__":
    sys.exit(main())
