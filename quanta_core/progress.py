"""Progress lines for long work: throttled, with rate and time left.

``RateLog(say, total, unit)`` is called with the amount done so far; it calls ``say(message)``
at most every ``every_seconds`` (and always when the work is complete), e.g. with Dagster's
``context.log.info`` or ``print``.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLog:
    """``rate_log(done, detail="")`` → ``say("1,234/5,678 tokens (22%), 950 tokens/s, ~5 s left")``."""

    def __init__(self, say: Callable[[str], None], total: int | None, unit: str, every_seconds: float = 10.0):
        self.say, self.total, self.unit, self.every = say, total, unit, every_seconds
        self.started = self.last = time.perf_counter()

    def __call__(self, done: int, detail: str = "") -> None:
        now = time.perf_counter()
        complete = self.total is not None and done >= self.total
        if now - self.last < self.every and not complete:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        message = f"{done:,}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}"
        if self.total:
            left = (self.total - done) / max(rate, 1e-9)
            message += f" ({done / self.total:.0%}), {rate:,.1f} {self.unit}/s, ~{left:.0f} s left"
        else:
            message += f", {rate:,.1f} {self.unit}/s"
        self.say(message + (f"; {detail}" if detail else ""))
