"""lossk's CUDA kernels against PyTorch eager, torch.compile and Liger-Kernel on one GPU, in one run.

Run from the repository root, in one call on a GPU machine (H100, sm_90)::

    python bench/gpu_benchmark.py --json results/gpu.json            # the issue's sizes, ~5 minutes
    python bench/gpu_benchmark.py --quick                             # small sizes: a smoke run
    python bench/gpu_benchmark.py --sweep                             # also sweep the cross-entropy layouts

Every time is the median of ``--repeats`` runs measured with CUDA events after warm-up; every figure is
reported as GB/s counting the minimum bytes a fused forward+backward moves (elementwise: read input and
target, write the gradient — 12 bytes per float32 element; cross-entropy: read the logits, write the
gradient — 2 x N x V x element size) and as a fraction of the device-to-device copy bandwidth measured at
the start of the same run. Peak extra device memory (PyTorch's allocator) is recorded per provider.
Providers whose library is missing or that fail are listed with the reason, never dropped silently.

Written without a GPU at hand: nothing here has run yet (see bench/GPU.md for the predictions it tests).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import statistics
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

ELEMENTWISE = ("mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits")
CROSS_ENTROPY_SIZES = ((4096, 131072), (16384, 32768))
COPY_BYTES = 1 << 30


def import_lossk() -> Any:
    """lossk from this checkout; without an install, ``lossk._kernels`` is mapped to ``kernels/`` here."""
    sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("lossk._kernels") is None:
        sys.modules["lossk._kernels"] = importlib.import_module("kernels")
        sys.modules["lossk._kernels.cuda"] = importlib.import_module("kernels.cuda")
    return importlib.import_module("lossk")


def cuda_time_ms(run: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of ``run`` between two CUDA events on the current stream."""
    import torch

    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def copy_bandwidth(repeats: int) -> dict[str, float]:
    """Device-to-device copy of 1 GiB of float32: bytes read + written per second (the ceiling)."""
    import torch

    source = torch.empty(COPY_BYTES // 4, device="cuda")
    destination = torch.empty_like(source)
    ms = cuda_time_ms(lambda: destination.copy_(source), repeats)
    return {"ms": ms, "gb_per_s": 2 * COPY_BYTES / ms / 1e6}


def measure(name: str, run: Callable[[], Any], bytes_moved: int, copy_gb_per_s: float, repeats: int) -> dict[str, Any]:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated()
    try:
        ms = cuda_time_ms(run, repeats)
    except Exception as error:  # noqa: BLE001 - a provider that fails is reported, not fatal
        return {"provider": name, "error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc(limit=3)}
    gb_per_s = bytes_moved / ms / 1e6
    return {
        "provider": name,
        "ms": round(ms, 4),
        "gb_per_s": round(gb_per_s, 1),
        "fraction_of_copy": round(gb_per_s / copy_gb_per_s, 3),
        "extra_peak_mib": round((torch.cuda.max_memory_allocated() - baseline) / 2**20, 1),
    }


# ---- elementwise ---------------------------------------------------------------------------------------------


def analytic(loss: str) -> Callable[[Any, Any], tuple[Any, Any]]:
    """(mean loss, gradient) in closed form, for torch.compile to fuse."""
    import torch

    def mse(x: Any, y: Any) -> tuple[Any, Any]:
        d = x - y
        return (d * d).mean(), 2 * d / d.numel()

    def l1(x: Any, y: Any) -> tuple[Any, Any]:
        d = x - y
        return d.abs().mean(), torch.sign(d) / d.numel()

    def huber(x: Any, y: Any, delta: float = 1.0) -> tuple[Any, Any]:
        d = x - y
        m = d.abs()
        value = torch.where(m < delta, 0.5 * d * d, delta * (m - 0.5 * delta))
        return value.mean(), d.clamp(-delta, delta) / d.numel()

    def smooth_l1(x: Any, y: Any, beta: float = 1.0) -> tuple[Any, Any]:
        d = x - y
        m = d.abs()
        value = torch.where(m < beta, 0.5 * d * d / beta, m - 0.5 * beta)
        return value.mean(), (d / beta).clamp(-1, 1) / d.numel()

    def bce_with_logits(x: Any, y: Any) -> tuple[Any, Any]:
        value = (1 - y) * x + torch.nn.functional.softplus(-x)
        return value.mean(), (torch.sigmoid(x) - y) / x.numel()

    return {
        "mse_loss": mse,
        "l1_loss": l1,
        "huber_loss": huber,
        "smooth_l1_loss": smooth_l1,
        "binary_cross_entropy_with_logits": bce_with_logits,
    }[loss]


def elementwise_providers(lossk: Any, loss: str, x: Any, y: Any, grad: Any) -> dict[str, Callable[[], Any]]:
    """One forward+backward of ``loss`` on 1-d float32 ``x``, ``y`` by each provider."""
    import torch

    function = getattr(lossk, loss)
    torch_function = getattr(torch.nn.functional, loss)
    compiled = torch.compile(analytic(loss))
    leaf = x.clone().requires_grad_(True)

    def eager() -> None:
        leaf.grad = None
        torch_function(leaf, y).backward()

    return {
        "lossk (cupy, out=)": lambda: function.value_and_grad(x, y, backend="cupy", out=grad),
        "lossk (cupy)": lambda: function.value_and_grad(x, y, backend="cupy"),
        "torch eager (autograd)": eager,
        "torch.compile (analytic)": lambda: compiled(x, y),
    }


def elementwise_suite(lossk: Any, n: int, copy_gb_per_s: float, repeats: int) -> list[dict[str, Any]]:
    import torch

    results = []
    x = torch.randn(n, device="cuda")
    y = torch.rand(n, device="cuda")  # in [0, 1]: a valid target for every loss here
    grad = torch.empty_like(x)
    for loss in ELEMENTWISE:
        for name, run in elementwise_providers(lossk, loss, x, y, grad).items():
            results.append(
                {"loss": loss, "n": n, "dtype": "float32", **measure(name, run, 12 * n, copy_gb_per_s, repeats)}
            )
            print_row(results[-1])
    return results


# ---- cross-entropy ---------------------------------------------------------------------------------------------


def liger_cross_entropy() -> Callable[[Any, Any], Any] | None:
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy
    except ImportError:
        return None
    return liger_cross_entropy


def cross_entropy_providers(lossk: Any, logits: Any, target: Any) -> dict[str, Callable[[], Any]]:
    """One forward+backward of cross-entropy by each provider; in-place ones work on a copy of ``logits``."""
    import torch
    import torch.nn.functional as F

    scratch = logits.clone()  # overwritten by the in-place providers; its values stay finite
    out = torch.empty_like(logits)

    def autograd(function: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            leaf = logits.detach().requires_grad_(True)
            function(leaf, target).backward()

        return run

    providers: dict[str, Callable[[], Any]] = {
        "lossk (cupy, in place)": lambda: lossk.cross_entropy.value_and_grad(
            scratch, target, backend="cupy", inplace=True
        ),
        "lossk (cupy, out=)": lambda: lossk.cross_entropy.value_and_grad(logits, target, backend="cupy", out=out),
        "torch eager (autograd)": autograd(F.cross_entropy),
        "torch.compile": autograd(torch.compile(F.cross_entropy)),
    }
    liger = liger_cross_entropy()
    if liger is not None:
        providers["liger-kernel"] = autograd(liger)
    return providers


def cross_entropy_suite(
    lossk: Any, sizes: tuple[tuple[int, int], ...], copy_gb_per_s: float, repeats: int
) -> list[dict[str, Any]]:
    import torch

    results = []
    for rows, classes in sizes:
        for dtype in (torch.float32, torch.bfloat16):
            logits = torch.randn(rows, classes, device="cuda", dtype=dtype)
            target = torch.randint(0, classes, (rows,), device="cuda")
            bytes_moved = 2 * rows * classes * logits.element_size()
            head = {"loss": "cross_entropy", "n": rows, "v": classes, "dtype": str(dtype)[6:]}
            for name, run in cross_entropy_providers(lossk, logits, target).items():
                results.append({**head, **measure(name, run, bytes_moved, copy_gb_per_s, repeats)})
                print_row(results[-1])
            if liger_cross_entropy() is None:
                results.append({**head, "provider": "liger-kernel", "error": "not installed"})
                print_row(results[-1])
            torch.cuda.empty_cache()
    return results


def sweep_one(lossk: Any, logits: Any, target: Any, copy_gb_per_s: float, repeats: int) -> list[dict[str, Any]]:
    """Cross-entropy in place on ``logits`` under each shared-memory chunk target (so each cluster size),
    and streamed (shared memory withheld from the plan)."""
    import torch

    from lossk._backends.cupy import compiler, launch

    rows, classes = logits.shape
    bytes_moved = 2 * logits.numel() * logits.element_size()
    device = torch.cuda.current_device()
    original_target, original_properties = launch.CHUNK_BYTES_TARGET, compiler.device_properties
    sm_count, shared_limit = original_properties(device)
    settings = [(f"chunk <= {kib} KiB", kib * 1024, shared_limit) for kib in (16, 32, 48, 64, 100, 200)]
    settings.append(("streamed (two reads)", original_target, 0))
    results = []
    try:
        for name, chunk_target, limit in settings:
            launch.CHUNK_BYTES_TARGET = chunk_target
            compiler.device_properties = lambda _device, limit=limit: (sm_count, limit)
            plan = launch.plan_cross_entropy(
                rows,
                classes,
                1,
                logits.element_size(),
                probability_target=False,
                sm_count=sm_count,
                shared_limit=limit,
                chunk_bytes_target=chunk_target,
            )
            row = measure(
                name,
                lambda: lossk.cross_entropy.value_and_grad(logits, target, backend="cupy", inplace=True),
                bytes_moved,
                copy_gb_per_s,
                repeats,
            )
            results.append(
                {
                    "loss": "cross_entropy sweep",
                    "n": rows,
                    "v": classes,
                    "dtype": str(logits.dtype)[6:],
                    "layout": plan.layout.name,
                    "cluster": plan.cluster,
                    "threads": plan.threads,
                    "chunk_bytes": plan.shared_bytes,
                    **row,
                }
            )
            print_row(results[-1])
    finally:
        launch.CHUNK_BYTES_TARGET, compiler.device_properties = original_target, original_properties
    return results


def layout_sweep(
    lossk: Any, sizes: tuple[tuple[int, int], ...], copy_gb_per_s: float, repeats: int
) -> list[dict[str, Any]]:
    import torch

    results = []
    for rows, classes in sizes:
        for dtype in (torch.float32, torch.bfloat16):
            logits = torch.randn(rows, classes, device="cuda", dtype=dtype)
            target = torch.randint(0, classes, (rows,), device="cuda")
            results += sweep_one(lossk, logits, target, copy_gb_per_s, repeats)
    return results


# ---- report ------------------------------------------------------------------------------------------------------


def print_row(row: dict[str, Any]) -> None:
    size = f"N={row['n']} V={row['v']}" if "v" in row else f"n={row.get('n')}"
    head = f"{row['loss']:<34} {row.get('dtype', ''):<9} {size:<22} {row['provider']:<26}"
    if "error" in row:
        print(f"{head} FAILED {row['error']}", flush=True)
        return
    extra = f" [{row['layout']} x{row['cluster']}, {row['threads']} threads]" if "layout" in row else ""
    print(
        f"{head} {row['ms']:>8.3f} ms {row['gb_per_s']:>7.0f} GB/s {100 * row['fraction_of_copy']:>5.1f}% of copy"
        f" +{row['extra_peak_mib']} MiB{extra}",
        flush=True,
    )


def environment() -> dict[str, Any]:
    import torch

    versions = {}
    for module in ("torch", "cupy", "triton", "liger_kernel", "numpy"):
        try:
            versions[module] = getattr(importlib.import_module(module), "__version__", "?")
        except ImportError:
            versions[module] = None
    return {"device": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability(), **versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats: a smoke run")
    parser.add_argument("--sweep", action="store_true", help="also sweep the cross-entropy launch layouts")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2
    lossk = import_lossk()
    repeats = args.repeats or (5 if args.quick else 20)
    elementwise_n = 1 << (22 if args.quick else 28)
    sizes = ((64, 131072), (256, 32768)) if args.quick else CROSS_ENTROPY_SIZES

    env = environment()
    copy = copy_bandwidth(repeats)
    print(
        f"{env['device']} (sm_{env['capability'][0]}{env['capability'][1]}), torch {env['torch']}, "
        f"cupy {env['cupy']}, liger {env['liger_kernel']}"
    )
    print(f"device-to-device copy, 1 GiB: {copy['ms']:.3f} ms = {copy['gb_per_s']:.0f} GB/s (the ceiling)")
    results = elementwise_suite(lossk, elementwise_n, copy["gb_per_s"], repeats)
    results += cross_entropy_suite(lossk, sizes, copy["gb_per_s"], repeats)
    if args.sweep:
        results += layout_sweep(lossk, sizes, copy["gb_per_s"], repeats)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": env, "copy": copy, "results": results}, indent=1))
        print(f"wrote {args.json}")
    failed = [r for r in results if "error" in r and r["provider"].startswith("lossk")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
