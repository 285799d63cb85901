"""The long fuzz run: ``python -m tests.fuzz.run --inputs 1000000`` (``make fuzz``).

Feeds generated inputs to a stub-role handler over the demo state (plus services too big
for UDP) and to a resolver-role handler with a recording forwarder, in turn; prints
progress and, at the end, one JSON line of figures. Exit status 1 if any property broke;
each broken input is printed as hex so it can become a regression test.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

from .gen import Gen
from .harness import Fuzzer, build_handler, fuzz_state, resolver_fuzzer, table_names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--max-crashes", type=int, default=20, help="stop after this many")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        stub = Fuzzer(build_handler(fuzz_state(Path(tmp))))
    resolver = resolver_fuzzer()
    names = table_names(stub.handler)
    gen = Gen(args.seed, names)
    gc.freeze()  # the tables built above are never garbage
    start = time.monotonic()
    print(f"fuzzing seed={args.seed} inputs={args.inputs}", flush=True)
    for i in range(args.inputs):
        data, tcp = gen.next()
        fuzzer = resolver if i % 4 == 3 else stub
        crash = fuzzer.feed(data, tcp)
        if crash is not None:
            print(f"CRASH {crash}", flush=True)
            if len(stub.crashes) + len(resolver.crashes) >= args.max_crashes:
                break
        if i and i % 100_000 == 0:
            print(f"{i} inputs, {time.monotonic() - start:.0f} s, "
                  f"crashes {len(stub.crashes) + len(resolver.crashes)}", flush=True)
    report = merge(stub.report(), resolver.report())
    report.update(seed=args.seed, seconds=round(time.monotonic() - start, 1))
    for took, data, tcp in stub.slow + resolver.slow:
        print(f"SLOW {took / 1000:.0f} us tcp={tcp} input={data.hex()}")
    print(json.dumps(report), flush=True)
    return 1 if report["crashes"] or report["slow_over_1ms"] else 0


def merge(a: dict[str, object], b: dict[str, object]) -> dict[str, object]:
    """Both handlers' figures: counts added, time figures of the stub role (3/4 of the
    inputs) with the worse max of the two."""
    out = dict(a)
    for key in ("inputs", "answered", "dropped", "crashes", "slow_over_1ms"):
        out[key] = int(a[key]) + int(b[key])  # type: ignore[call-overload]
    for key in ("max_us", "first_try_max_us"):
        out[key] = max(float(a[key]), float(b[key]))  # type: ignore[arg-type]
    out["resolver_role"] = {k: b[k] for k in ("inputs", "p99_us", "max_us", "forwarded")}
    return out


if __name__ == "__main__":
    sys.exit(main())
