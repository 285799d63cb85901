"""A 60-second soak in CI (tests/soak.py; `make soak` runs 10 minutes): load, flapping
services, cut watches and 410s; every answer right at the end, no SERVFAIL after the
first sync, RSS growth under 5% after warm-up."""

from __future__ import annotations

import asyncio
import os

from conftest import needs
from soak import soak


def test_soak() -> None:
    needs("dnsperf")
    seconds = float(os.environ.get("MCDNS_SOAK_SECONDS", "60"))
    result = asyncio.run(soak(seconds, rate=1500))
    assert result.queries > seconds * 1000, result
    assert result.flaps > seconds * 5 and result.watch_cuts >= seconds // 4
    assert result.compactions >= seconds // 8
    assert result.mismatches == [], result.mismatches
    assert result.servfail == 0, result
    assert result.rss_growth < 0.05, result
