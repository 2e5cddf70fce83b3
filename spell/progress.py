"""Progress that reads well in both places it is watched: a bar on a terminal, plain lines in a log.

A deployment's log, a CI log or `spell run > run.log` is not a terminal: there a carriage-return bar turns
into garbage, so a line is written instead at most every 10% (and at least every `every` seconds).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "item",
        stream: TextIO | None = None,
        emit: Callable[[str], None] | None = None,
        every: float = 30.0,
    ):
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.stream = stream or sys.stderr
        self.emit = emit or (lambda line: print(line, file=self.stream, flush=True))
        self.every, self.last_line, self.last_step = every, time.monotonic(), -1
        self.bar: Any = None
        if total and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=self.stream)

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix_str(postfix)
            return
        step = int(10 * self.done / max(self.total, 1))
        if step > self.last_step or time.monotonic() - self.last_line >= self.every or self.done >= self.total:
            self.last_step, self.last_line = step, time.monotonic()
            tail = f", {postfix}" if postfix else ""
            self.emit(f"{self.desc}: {self.done}/{self.total} {self.unit}s{tail}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
