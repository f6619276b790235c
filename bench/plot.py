"""The benchmark's picture: throughput against size, one panel per loss, one line per provider."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .run import Measurement


def plot(measurements: Sequence[Measurement], copy_gbs: float, title: str, path: Path) -> None:
    """Write a PNG: GB/s (at the minimum bytes) against elements, the copy bandwidth as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = list(dict.fromkeys(m.loss for m in measurements))
    providers = list(dict.fromkeys(m.provider for m in measurements))
    colors = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(providers)}
    columns = min(4, len(losses))
    rows = math.ceil(len(losses) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.2 * rows + 0.8), squeeze=False, layout="constrained"
    )
    for ax, loss in zip(axes.flat, losses):
        for provider in providers:
            points = sorted((m.elements, m.gbs) for m in measurements if m.loss == loss and m.provider == provider)
            if points:
                x, y = zip(*points)
                ax.plot(
                    x,
                    y,
                    marker="o",
                    markersize=3,
                    color=colors[provider],
                    label=provider,
                    linewidth=2.2 if provider.startswith("lossk.") else 1.2,
                )
        ax.axhline(copy_gbs, color="black", linestyle="--", linewidth=1, label="copy bandwidth")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(loss, fontsize=10)
        ax.set_xlabel("elements (logits for cross-entropy)", fontsize=8)
        ax.set_ylabel("GB/s at minimum bytes", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(losses) :]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}  # label -> handle, across panels (a provider may run on some losses only)
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    figure.legend(
        list(legend.values()), list(legend.keys()), loc="outside lower center", ncols=min(len(legend), 6), fontsize=8
    )
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=72, pil_kwargs={"optimize": True})
    plt.close(figure)
