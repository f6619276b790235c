"""A full PyTorch training step on the CPU with PyTorch's cross-entropy and with lossk's.

A two-layer MLP (``--features`` -> ``--hidden`` -> ReLU -> ``--classes``) on a batch of ``--batch`` rows,
float32: forward, loss, backward and an SGD step. The loss is ``torch.nn.functional.cross_entropy``,
``lossk.torch.cross_entropy`` or the same with ``inplace=True`` (the logits overwritten by their gradient).
Prints the median step time of each and the ratio to PyTorch's. Run: ``python -m bench.training_step``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812

import lossk.torch


def step_time(loss_function: Callable[..., torch.Tensor], args: argparse.Namespace) -> tuple[float, list[float]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(args.features, args.hidden), torch.nn.ReLU(), torch.nn.Linear(args.hidden, args.classes)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    x = torch.randn(args.batch, args.features)
    labels = torch.randint(0, args.classes, (args.batch,))
    times = []
    for _ in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_function(model(x), labels)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[args.warmup:]) * 1e3, [t * 1e3 for t in times[args.warmup:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--classes", type=int, default=32768)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    print(f"MLP {args.features} -> {args.hidden} -> ReLU -> {args.classes}, batch {args.batch}, float32, "
          f"median of {args.steps} steps")
    losses = {
        "F.cross_entropy": F.cross_entropy,
        "lossk.torch.cross_entropy": lossk.torch.cross_entropy,
        "lossk.torch.cross_entropy(inplace=True)": lambda z, t: lossk.torch.cross_entropy(z, t, inplace=True),
    }
    baseline = None
    for name, loss_function in losses.items():
        median, _ = step_time(loss_function, args)
        baseline = baseline or median
        print(f"{name:42s} {median:8.1f} ms per step   {baseline / median:5.2f}x PyTorch's")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
