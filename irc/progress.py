"""One progress display over samples, on stderr (tqdm).

On a terminal it is a bar redrawn in place.  When stderr is a pipe or a file
(a log, CI) a redrawn bar would be a wall of ``\\r`` frames, so it prints one
plain line every few seconds instead (``IRC_PROGRESS_INTERVAL``, default 5),
and a last one at the end (a run shorter than that prints none).  ``enabled=False`` (``irc run --quiet``) prints
nothing.  It can also be handed to ``Program.run(progress=...)``, which calls
it as ``progress(done, total)``.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO

from tqdm import tqdm

DEFAULT_INTERVAL = 5.0
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} samples ({percentage:.0f}%), {elapsed} elapsed, {remaining} left, {rate_fmt}"
LINE_FORMAT_OPEN = "{desc}: {n_fmt} samples, {elapsed} elapsed, {rate_fmt}"


class _Lines:
    """A stream for tqdm that turns its in-place frames into whole lines."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()


class Progress:
    """A context manager: ``update(samples)`` as work completes."""

    def __init__(self, label: str, total: int | None = None, enabled: bool = True, stream: IO[str] | None = None,
                 interval: float | None = None):
        stream = stream or sys.stderr
        self.bar: tqdm | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if not enabled:
            return
        tty = bool(getattr(stream, "isatty", lambda: False)())
        if interval is None:
            interval = float(os.environ.get("IRC_PROGRESS_INTERVAL", DEFAULT_INTERVAL)) if not tty else 0.2
        common = dict(total=total, desc=label, unit=" samples", file=stream if tty else _Lines(stream),
                      mininterval=interval, miniters=1, leave=True, dynamic_ncols=tty)
        if tty:
            self.bar = tqdm(**common)
        else:
            # the first line after one interval: a short run leaves no trace in a log
            self.bar = tqdm(bar_format=LINE_FORMAT if total is not None else LINE_FORMAT_OPEN, delay=interval,
                            **common)
        self.interval = max(interval, 0.05)
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        """Redraw now and then while a long batch gives no update (elapsed time moves on)."""
        while not self._stop.wait(self.interval):
            bar = self.bar
            now = time.time()
            if bar is not None and bar.last_print_t + self.interval <= now:
                bar.refresh()
                bar.last_print_t = now  # the next update waits a full interval again

    def update(self, samples: int) -> None:
        if self.bar is not None:
            self.bar.update(samples)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            if self.bar.total != total:
                self.bar.total = total
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
