"""Progress of the long phases of a run beyond its training steps: targets, the final evaluation,
renders, videos, marching cubes, reports.

A :class:`Progress` is handed to whatever runs such a phase (tasks hold one in their ``progress``
attribute, set by the runner); it makes tqdm bars over chunks, views or frames (quiet under
``--no_progress``) and writes one line with each phase's duration when it ends (always, to the run's
log). The default, :data:`QUIET`, shows nothing, so a library call made outside a run prints nothing.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar

T = TypeVar("T")


def _silent(line: str) -> None:
    return None


@dataclass(frozen=True)
class Progress:
    """``bars``: draw tqdm bars (``--no_progress`` turns them off); ``log``: where a phase's duration line
    goes (a run's ``print``: the terminal and log.txt)."""

    bars: bool = False
    log: Callable[[str], None] = _silent

    def bar(self, iterable: Optional[Iterable[T]] = None, total: Optional[int] = None, desc: str = "",
            unit: str = "it") -> Iterator[T]:
        """``iterable`` with a tqdm bar (``total`` items when it has no length), gone when done."""
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not self.bars, leave=False,
                    dynamic_ncols=True, mininterval=0.5)

    def chunks(self, items: Sequence[T], desc: str, unit: str = "chunk") -> Iterator[T]:
        """The chunks of a chunked computation (e.g. ``coords.split(n)``) with a bar once there are two."""
        items = list(items)
        if len(items) < 2:
            return iter(items)
        return self.bar(items, total=len(items), desc=desc, unit=unit)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Times the ``with`` block and logs ``<name>: <seconds> s`` when it ends."""
        start = time.perf_counter()
        yield
        self.log(f"{name}: {time.perf_counter() - start:.1f} s")


QUIET = Progress()
"""No bars, no lines: the default of a task built outside a run."""


def timed(progress: Progress, name: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` as one phase of ``progress`` (its duration logged)."""
    with progress.phase(name):
        return compute()
