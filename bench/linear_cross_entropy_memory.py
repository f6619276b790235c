"""Fused linear + cross-entropy on the CPU: time and peak memory of lossk against PyTorch 2.13, one run.

Every provider runs in a fresh process (``python -m bench.linear_cross_entropy_memory``; ``--help`` for
sizes and providers). Each process builds float32 ``input`` (N, H), ``linear_weight`` (V, H) and class
indices, runs one tiny call (imports, JIT compilation), resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``), and then times forward+backward calls with every gradient the provider
returns (d_input and d_linear_weight, 4·(N·H + V·H) bytes). Reported per provider: the median time of the
timed calls (and their CPU time over all threads, less sensitive to other
processes on a shared machine), the peak resident-memory growth of the *first* full-size call over the memory held just
before it ("first"), and the largest growth of the later calls ("steady", BLAS and allocator pools
already warm). Linux only (reads /proc).

Providers: ``lossk`` (backend auto: the Numba cross-entropy kernel when registered), ``lossk-reference``
(the Array API reference), ``torch-chunked`` (``F.linear_cross_entropy(...,
options=torch.nn.LinearCrossEntropyOptions())``) and ``torch-reference`` (the same with ``options=None``,
i.e. matmul + cross_entropy, materialising the logits).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

PROVIDERS = ("lossk", "lossk-reference", "torch-chunked", "torch-reference")


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(key))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _make_call(
    provider: str, n: int, h: int, v: int
) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], None]]:
    """(the full-size forward+backward, a tiny one for warm-up, a function that frees the gradients of the last
    call) of ``provider`` on seeded float32 data; calls return the loss as a float."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h), dtype=np.float32)
    w = rng.standard_normal((v, h), dtype=np.float32) * np.float32(h**-0.5)
    target = rng.integers(0, v, n)
    if provider.startswith("lossk"):
        import lossk

        backend = "auto" if provider == "lossk" else "array_api"

        def lossk_call(rows: int = n) -> Any:
            loss, _ = lossk.linear_cross_entropy.value_and_grad(x[:rows], w, target[:rows], backend=backend)
            return float(loss)  # the gradients are freed on return

        return lossk_call, lambda: lossk_call(8), lambda: None
    import torch
    import torch.nn.functional as F

    options = torch.nn.LinearCrossEntropyOptions() if provider == "torch-chunked" else None
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)
    tt = torch.from_numpy(target)

    def torch_call(rows: int = n) -> Any:
        loss = F.linear_cross_entropy(tx[:rows], tw, tt[:rows], ignore_index=-100, options=options)
        loss.backward()
        return float(loss)

    def release() -> None:
        tx.grad = tw.grad = None

    return torch_call, lambda: torch_call(8), release


def measure(provider: str, n: int, h: int, v: int, repeats: int) -> dict[str, Any]:
    """Run in this (fresh) process: time and peak-memory growth of ``provider``."""
    call, warm_up, release = _make_call(provider, n, h, v)
    warm_up()
    times, cpu_times, growths = [], [], []
    loss = None
    for _ in range(repeats):
        release()
        _reset_peak()
        before = _status_bytes("VmRSS")
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = call()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        growths.append(_status_bytes("VmHWM") - before)
    return {
        "provider": provider,
        "loss": loss,
        "median_s": statistics.median(times),
        "times_s": times,
        "median_cpu_s": statistics.median(cpu_times),
        "first_growth_mib": growths[0] / 2**20,
        "steady_growth_mib": max(growths[1:], default=growths[0]) / 2**20,
    }


def versions() -> dict[str, str]:
    import numba
    import numpy
    import torch

    import lossk

    return {
        "lossk": lossk.__version__,
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="tokens N (default 4096)")
    parser.add_argument("--h", type=int, default=512, help="hidden features H (default 512)")
    parser.add_argument("--v", type=int, default=32768, help="classes V (default 32768)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per provider (default 3)")
    parser.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    parser.add_argument("--json", action="store_true", help="print one JSON line per provider")
    parser.add_argument("--child", choices=PROVIDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.n, args.h, args.v, args.repeats)))
        return
    sizes = ["--n", str(args.n), "--h", str(args.h), "--v", str(args.v), "--repeats", str(args.repeats)]
    logits_mib = args.n * args.v * 4 / 2**20
    gradients_mib = (args.n + args.v) * args.h * 4 / 2**20
    print(
        f"linear_cross_entropy fwd+bwd float32, N={args.n} H={args.h} V={args.v}: full logits {logits_mib:.0f} MiB, "
        f"gradients returned {gradients_mib:.0f} MiB; {versions()}"
    )
    results = []
    for provider in args.providers:
        done = subprocess.run(
            [sys.executable, "-m", "bench.linear_cross_entropy_memory", *sizes, "--child", provider],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    baseline = next((r["median_s"] for r in results if r["provider"] == "torch-chunked"), None)
    for r in results:
        if args.json:
            print(json.dumps(r))
            continue
        ratio = "" if baseline is None else f"  {baseline / r['median_s']:.2f}x torch-chunked's speed"
        print(
            f"{r['provider']:>16}: {r['median_s']:.2f} s (median of {len(r['times_s'])}; CPU time of all threads "
            f"{r['median_cpu_s']:.2f} s), peak RSS growth "
            f"first call {r['first_growth_mib']:.0f} MiB, later calls {r['steady_growth_mib']:.0f} MiB, "
            f"loss {r['loss']:.6f}{ratio}"
        )


if __name__ == "__main__":
    main()
