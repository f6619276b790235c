"""Does lossk's Numba kernel keep its speed inside a PyTorch training step, and does it slow PyTorch?

Two OpenMP runtimes live in a process that uses both: PyTorch's bundled ``libgomp.so.1`` and the system
``libgomp.so.1.0.0`` that Numba's ``omp`` threading layer links. After a parallel region each runtime's
threads spin for a while before sleeping, and on a small machine the spinning threads of one take the
cores the other needs. This script times, in a fresh process per configuration:

- ``lossk``: 2^24 float32 Huber forward+backward (``lossk.huber_loss.value_and_grad``, Numba) alone;
- ``lossk after torch``: the same call right after a multi-threaded PyTorch op (a 1024x1024 matmul and a
  2^24 elementwise op, as in a training step);
- ``torch``: that PyTorch op alone, and ``torch after lossk``: right after the lossk call.

Run: ``python -m bench.thread_pools`` (all configurations) or ``python -m bench.thread_pools --child`` with
the environment of one. Medians of ``--repeats`` calls, in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGURATIONS: dict[str, dict[str, str]] = {
    "default (numba omp)": {},
    "NUMBA_THREADING_LAYER=workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "workqueue + OMP_WAIT_POLICY=PASSIVE": {"NUMBA_THREADING_LAYER": "workqueue", "OMP_WAIT_POLICY": "PASSIVE"},
    "torch.set_num_threads(1)": {"LOSSK_BENCH_TORCH_THREADS": "1"},
}


def child(repeats: int) -> dict[str, float]:
    import numpy as np
    import torch

    import lossk

    if "LOSSK_BENCH_TORCH_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["LOSSK_BENCH_TORCH_THREADS"]))
    rng = np.random.default_rng(0)
    n = 1 << 24
    x, y = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    out = np.empty_like(x)
    a = torch.randn(1024, 1024)
    big = torch.from_numpy(rng.standard_normal(n, dtype=np.float32))

    def lossk_call() -> None:
        lossk.huber_loss.value_and_grad(x, y, backend="numba", out=out)

    def torch_call() -> None:
        (a @ a).sum()
        torch.tanh(big).sum()

    def timed(function) -> float:
        start = time.perf_counter()
        function()
        return (time.perf_counter() - start) * 1e3

    lossk_call(), torch_call()  # compile, warm up
    alone = [timed(lossk_call) for _ in range(repeats)]
    torch_alone = [timed(torch_call) for _ in range(repeats)]
    after, torch_after = [], []
    for _ in range(repeats):
        torch_call()
        after.append(timed(lossk_call))
        torch_after.append(timed(torch_call))
    import numba

    return {
        "lossk": statistics.median(alone),
        "lossk after torch": statistics.median(after),
        "torch": statistics.median(torch_alone),
        "torch after lossk": statistics.median(torch_after),
        "threading layer": numba.threading_layer(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help="time one configuration (the current environment)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.repeats)))
        return
    print(f"load average before: {os.getloadavg()}")
    for name, environment in CONFIGURATIONS.items():
        finished = subprocess.run(
            [sys.executable, "-m", "bench.thread_pools", "--child", "--repeats", str(args.repeats)],
            env={**os.environ, **environment}, capture_output=True, text=True, check=True,
        )
        result = json.loads(finished.stdout.strip().splitlines()[-1])
        kept = result["lossk"] / result["lossk after torch"]
        print(f"{name:40s} lossk {result['lossk']:6.1f}  after torch {result['lossk after torch']:6.1f} "
              f"({kept:4.0%} kept)  torch {result['torch']:6.1f}  after lossk {result['torch after lossk']:6.1f}  "
              f"[{result['threading layer']}]")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
