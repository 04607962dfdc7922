"""One progress bar for the command line: tqdm where it is installed, else plain text.

Blender's Python has no tqdm, and the commands that run there (``predict``, ``generate``)
must not need it. :func:`progress_bar` takes the tqdm arguments those commands use and
returns a tqdm bar, or a :class:`PlainProgress` that writes a short line to stderr now and
then (``generate trainA: 3/10 img``) and one when it closes. Only ``update``, ``close``,
``write`` and use as a context manager are promised.
"""
from __future__ import annotations

import sys
import time


class PlainProgress:
    """A tqdm stand-in: one line per ~10 % of the work (at most one every 2 s), and at the end."""

    def __init__(self, total=None, initial: int = 0, desc: str = "", unit: str = "it", disable: bool = False,
                 file=None, min_interval: float = 2.0, **_ignored):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.disable, self.file, self.min_interval = disable, file, min_interval
        self._start = self._last = time.monotonic()
        self._shown = initial
        self._closed = False

    def _line(self) -> str:
        head = f"{self.desc}: " if self.desc else ""
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        return f"{head}{count} {self.unit} ({time.monotonic() - self._start:.0f} s)"

    def _print(self, text: str) -> None:
        out = self.file or sys.stderr
        print(text, file=out, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        step = max(1, (self.total or 10) // 10)
        if self.n - self._shown >= step and now - self._last >= self.min_interval:
            self._print(self._line())
            self._shown, self._last = self.n, now

    def write(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.n != self._shown:
            self._print(self._line())

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def progress_bar(total=None, *, initial: int = 0, desc: str = "", unit: str = "it", disable: bool = False,
                 file=None, **tqdm_options):
    """A tqdm bar when tqdm is installed, else a :class:`PlainProgress` (same arguments)."""
    if has_tqdm():
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable,
                    file=file if file is not None else sys.stderr, **tqdm_options)
    return PlainProgress(total, initial=initial, desc=desc, unit=unit, disable=disable, file=file)
