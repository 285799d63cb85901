"""What the listeners call: the handler's signature and the rate limiter's.

Both listener kinds (``server.py``'s asyncio protocols and ``mmsg.py``'s batched UDP)
take these; defined here so neither listener module imports the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Response = bytes | None | Awaitable[bytes | None]
"""An answer now, no answer (drop), or an answer later (a forwarded query)."""

HandleFn = Callable[[bytes, str, bool], Response]
"""(message, client ip, over TCP) -> response: ``Handler.handle`` or a wrapper of it."""

RateLimitFn = Callable[[str, bytes], "bytes | None"]
"""Response rate limiting on UDP: (client ip, response) -> response, a slip (TC) or None."""
