"""A progress bar on stderr: tqdm's when it is installed, otherwise one line per step."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress(total: int, *, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """Yield ``step(label)``, to be called once per unit of work (``total`` of them)."""
    if not enabled:
        yield lambda label: None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        done = 0

        def step(label: str) -> None:
            nonlocal done
            done += 1
            print(f"[{done}/{total}] {label}", file=sys.stderr, flush=True)

        yield step
        return
    with tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True, leave=False) as bar:

        def advance(label: str) -> None:
            bar.set_postfix_str(label, refresh=False)
            bar.update()

        yield advance
