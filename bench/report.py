"""The benchmark's outputs in words and data: one table per loss, and the full results as JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .cases import Case
from .run import LOSS_RTOL, Measurement, Outcome

COLUMNS = ("size", "provider", "median ms", "GB/s", "of copy", "vs best peer")
WIDTHS = (16, 16, 11, 10, 9, 14)


def table(case: Case, measurements: Sequence[Measurement], copy_gbs: float) -> str:
    """The table of one loss: per size, the providers fastest first."""
    name = case.name if case.lossk_name == case.name else f"{case.name} (lossk.{case.lossk_name})"
    lines = [
        f"{name}: forward+backward, float32, reduction='mean'",
        f"  GB/s counts the minimum bytes ({case.layout.description}); copy bandwidth {copy_gbs:.1f} GB/s",
    ]
    widths = (WIDTHS[0], max(WIDTHS[1], *(len(m.provider) for m in measurements)), *WIDTHS[2:])
    lines.append("  " + _row(COLUMNS, widths))
    sizes = list(dict.fromkeys(m.size for m in measurements))
    for size in sizes:
        rows = sorted((m for m in measurements if m.size == size), key=lambda m: m.median_s)
        for i, m in enumerate(rows):
            speedup = "" if m.speedup_vs_best_peer is None else f"{m.speedup_vs_best_peer:.2f}x"
            mark = "" if m.loss_matches else "  ! loss differs"
            cells = (
                size if i == 0 else "",
                m.provider,
                f"{m.median_s * 1e3:.3f}",
                f"{m.gbs:.2f}",
                f"{m.fraction_of_copy:.0%}",
                speedup,
            )
            lines.append("  " + _row(cells, widths) + mark)
    if not all(m.loss_matches for m in measurements):
        lines.append(
            f"  ! the loss differs from the float64 NumPy value by more than {LOSS_RTOL:g} (relative); "
            "such rows are not counted as peers"
        )
    return "\n".join(lines)


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    left = [f"{cell:<{width}}" for cell, width in zip(cells[:2], widths[:2])]
    right = [f"{cell:>{width}}" for cell, width in zip(cells[2:], widths[2:])]
    return " ".join(left + right).rstrip()


def skipped_lines(outcome: Outcome) -> list[str]:
    """One line per skipped provider and reason (naming the losses it applies to), then one per failure."""
    losses: dict[tuple[str, str], list[str]] = {}
    for skip in outcome.skipped:
        losses.setdefault((skip.provider, skip.reason), []).extend([] if skip.loss is None else [skip.loss])
    lines = [
        f"skipped {provider}{' on ' + ', '.join(names) if names else ''}: {reason}"
        for (provider, reason), names in losses.items()
    ]
    lines += [f"FAILED {f.provider} on {f.loss} {f.size}: {f.error}" for f in outcome.failed]
    return lines


def to_json(outcome: Outcome, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Everything measured, with ``metadata`` (machine, versions, settings) at the top."""
    return {
        **metadata,
        "providers_run": outcome.providers_run(),
        "skipped": [dataclasses.asdict(s) for s in outcome.skipped],
        "failed": [dataclasses.asdict(f) for f in outcome.failed],
        "results": [{**dataclasses.asdict(m), "loss_matches": m.loss_matches} for m in outcome.measurements],
    }


def write_json(document: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")
