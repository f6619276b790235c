"""lossk's CUDA kernels against PyTorch eager, torch.compile, Liger-Kernel and cut-cross-entropy on one GPU.

Run from the repository root, in one call on a GPU machine (H200, sm_90); ``bench/gpu_check.sh`` runs it::

    python bench/gpu_benchmark.py --json out/bench.json --png out/bench.png    # the goals table (bench/GPU.md)
    python bench/gpu_benchmark.py --headline                                   # the headline rows only
    python bench/gpu_benchmark.py --sweep                                      # also the cross-entropy layouts
    python bench/gpu_benchmark.py --dry-run --json x.json --png x.png          # no GPU: the plan, stub figures

The work follows the goals table of bench/GPU.md, most important first, so that a deadline (SIGINT) cuts the tail
only: the JSON is rewritten after every measurement and the plot drawn from whatever was measured. Every
time is the median of ``--repeats`` runs measured with CUDA events after warm-up; every figure is reported
as GB/s counting the minimum bytes a fused forward+backward moves (elementwise: read input and target, write
the gradient; cross-entropy: read the logits, write the gradient) and as a fraction of the device-to-device
copy bandwidth measured at the start of the same run. Peak extra device memory (PyTorch's allocator) is
recorded per provider. The providers are those of ``bench/providers.py`` (their names, and whether their
library is installed); providers that are missing or fail are listed with the reason, never dropped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import statistics
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

ELEMENTWISE = ("mse_loss", "binary_cross_entropy_with_logits", "l1_loss", "huber_loss", "smooth_l1_loss")
ELEMENTWISE_N = 1 << 28
CROSS_ENTROPY_SIZES = ((4096, 131072), (16384, 32768))
LINEAR_CROSS_ENTROPY = (8192, 4096, 128256)
"""(tokens BT, hidden H, vocabulary V) of the linear_cross_entropy goal (bench/GPU.md)."""
ALL_OPTIONS = {"label_smoothing": 0.1, "z_loss": 1e-4, "softcap": 30.0}
COPY_BYTES = 1 << 30


def import_lossk() -> Any:
    """lossk from this checkout (which maps ``kernels/`` to ``lossk._kernels`` itself)."""
    sys.path.insert(0, str(ROOT))
    return importlib.import_module("lossk")


def peer_providers() -> dict[str, Any]:
    """bench/providers.py's providers, by name (torch, torch.compile, liger, cut-cross-entropy, lossk.cupy)."""
    sys.path.insert(0, str(ROOT))
    from bench import providers

    return providers.PROVIDERS


def unavailable(name: str) -> str | None:
    """Why provider ``name`` of bench/providers.py cannot run on the GPU here, or None."""
    provider = peer_providers().get(name)
    if provider is None:
        return f"{name} is not a provider of bench/providers.py"
    from bench.providers import GPU

    return provider.unavailable(GPU)


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


def elementwise_case(loss: str) -> Any:
    """The bench case (``bench/cases.py``, built from the loss-spec table) of lossk function ``loss``."""
    sys.path.insert(0, str(ROOT))
    from bench.cases import CASES

    return next(case for case in CASES.values() if case.lossk_name == loss)


def elementwise_providers(lossk: Any, loss: str, x: Any, y: Any, grad: Any) -> dict[str, Callable[[], Any]]:
    """One forward+backward of ``loss`` on 1-d ``x``, ``y`` by each provider (the peers those of
    bench/providers.py: eager PyTorch, and torch.compile of the spec's formulation with its gradient)."""
    case = elementwise_case(loss)
    providers = peer_providers()
    eager = providers["torch"].loss_function(case)
    leaf = x.clone().requires_grad_(True)

    def autograd() -> None:
        leaf.grad = None
        eager(leaf, y).backward()

    calls: dict[str, Callable[[], Any]] = {
        "lossk.cupy (out=)": lambda: getattr(lossk, loss).value_and_grad(x, y, backend="cupy", out=grad, **case.options),
        "torch": autograd,
    }
    if unavailable("torch.compile.formula") is None:
        compiled = providers["torch.compile.formula"].value_and_grad(case)
        calls["torch.compile.formula"] = lambda: compiled(x, y)
    return calls


def elementwise_work(loss: str, dtype: str, n: int, headline: bool) -> Callable[[Any, Recorder], None]:
    def run(lossk: Any, recorder: Recorder) -> None:
        import torch

        torch_dtype = getattr(torch, dtype)
        x = torch.randn(n, device="cuda", dtype=torch_dtype)
        y = torch.rand(n, device="cuda", dtype=torch_dtype)  # in [0, 1]: a valid target for every loss here
        grad = torch.empty_like(x)
        head = {"loss": loss, "n": n, "dtype": dtype, "headline": headline}
        for name, call in elementwise_providers(lossk, loss, x, y, grad).items():
            recorder.measure(head, name, call, 3 * n * x.element_size())
        del x, y, grad
        torch.cuda.empty_cache()

    return run


# ---- cross-entropy ---------------------------------------------------------------------------------------------


def cross_entropy_providers(lossk: Any, logits: Any, target: Any, options: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """One forward+backward of cross-entropy by each provider; in-place ones work on a copy of ``logits``."""
    import torch
    import torch.nn.functional as F

    scratch = logits.clone()  # overwritten by the in-place providers; its values stay finite
    out = torch.empty_like(logits)
    torch_options = {k: v for k, v in options.items() if k in ("label_smoothing", "weight")}

    def autograd(function: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            leaf = logits.detach().requires_grad_(True)
            function(leaf, target).backward()

        return run

    providers: dict[str, Callable[[], Any]] = {
        "lossk.cupy (in place)": lambda: lossk.cross_entropy.value_and_grad(
            scratch, target, backend="cupy", inplace=True, **options
        ),
        "lossk.cupy (out=)": lambda: lossk.cross_entropy.value_and_grad(logits, target, backend="cupy", out=out, **options),
    }
    if options:  # z_loss and softcap: no peer has them all; PyTorch with the options it has, for scale
        providers["torch (smoothing and weight only)"] = autograd(lambda x, t: F.cross_entropy(x, t, **torch_options))
        return providers
    from bench.cases import CASES

    case = CASES["cross_entropy"]
    peers = peer_providers()
    providers["torch"] = autograd(peers["torch"].loss_function(case))
    if unavailable("torch.compile") is None:
        providers["torch.compile"] = autograd(peers["torch.compile"].loss_function(case))
    if unavailable("liger") is None:
        from liger_kernel import transformers

        providers["liger"] = autograd(case.liger(transformers))
    return providers


def cross_entropy_work(rows: int, classes: int, dtype: str, headline: bool, all_options: bool = False
                       ) -> Callable[[Any, Recorder], None]:
    def run(lossk: Any, recorder: Recorder) -> None:
        import torch

        logits = torch.randn(rows, classes, device="cuda", dtype=getattr(torch, dtype))
        target = torch.randint(0, classes, (rows,), device="cuda")
        options: dict[str, Any] = {}
        if all_options:
            options = {**ALL_OPTIONS, "weight": torch.rand(classes, device="cuda", dtype=torch.float32) + 0.5}
        bytes_moved = 2 * rows * classes * logits.element_size()
        head = {"loss": "cross_entropy" + (" (all options)" if all_options else ""), "n": rows, "v": classes,
                "dtype": dtype, "headline": headline}
        for name, call in cross_entropy_providers(lossk, logits, target, options).items():
            recorder.measure(head, name, call, bytes_moved)
        for name in ([] if all_options else ["liger", "torch.compile"]):
            reason = unavailable(name)
            if reason is not None:
                recorder.record({**head, "provider": name, "error": reason})
        del logits, target
        torch.cuda.empty_cache()

    return run


# ---- linear cross-entropy --------------------------------------------------------------------------------------


def linear_cross_entropy_work(tokens: int, hidden: int, vocabulary: int, headline: bool
                              ) -> Callable[[Any, Recorder], None]:
    """lossk.linear_cross_entropy against its three matrix products (cuBLAS through torch: the floor), torch's
    unfused autograd, Liger's fused linear cross-entropy and cut-cross-entropy, bf16."""

    def run(lossk: Any, recorder: Recorder) -> None:
        import torch
        import torch.nn.functional as F

        x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16) * 0.5
        weight = torch.randn(vocabulary, hidden, device="cuda", dtype=torch.bfloat16) * hidden**-0.5
        target = torch.randint(0, vocabulary, (tokens,), device="cuda")
        grad_logits = torch.empty(tokens, vocabulary, device="cuda", dtype=torch.bfloat16)
        head = {"loss": "linear_cross_entropy", "n": tokens, "h": hidden, "v": vocabulary, "dtype": "bfloat16",
                "headline": headline}
        matmul_bytes = 2 * (tokens * hidden + vocabulary * hidden)  # not the floor: reported for scale only

        def three_products() -> None:
            torch.mm(x, weight.T, out=grad_logits)  # forward logits
            torch.mm(grad_logits, weight)  # d input
            torch.mm(grad_logits.T, x)  # d weight

        def autograd(function: Callable[..., Any]) -> Callable[[], None]:
            def call() -> None:
                leaf_x = x.detach().requires_grad_(True)
                leaf_w = weight.detach().requires_grad_(True)
                function(leaf_x, leaf_w, target).backward()

            return call

        providers: dict[str, Callable[[], Any]] = {
            "3 matrix products (cuBLAS)": three_products,
            "lossk.cupy": lambda: lossk.linear_cross_entropy.value_and_grad(x, weight, target, backend="cupy"),
            "torch": autograd(lambda a, w, t: F.cross_entropy(a @ w.T, t)),
        }
        if unavailable("liger") is None:
            from liger_kernel import transformers

            from bench.cases import CASES

            providers["liger"] = autograd(CASES["linear_cross_entropy"].liger(transformers))
        if unavailable("cut-cross-entropy") is None:
            from cut_cross_entropy import linear_cross_entropy as cce

            providers["cut-cross-entropy"] = autograd(lambda a, w, t: cce(a, w, t))
        for name, call in providers.items():
            recorder.measure(head, name, call, matmul_bytes)
        for name in ("liger", "cut-cross-entropy"):
            reason = unavailable(name)
            if reason is not None:
                recorder.record({**head, "provider": name, "error": reason})
        del x, weight, target, grad_logits
        torch.cuda.empty_cache()

    return run


def goals(headline_only: bool) -> list[tuple[str, Callable[[Any, Recorder], None]]]:
    """The goals table as (label, work), most important first; the headline rows come first."""
    work: list[tuple[str, Callable[[Any, Recorder], None], bool]] = [
        ("cross_entropy bf16 4096x131072", cross_entropy_work(4096, 131072, "bfloat16", True), True),
        ("mse fp32 2^28", elementwise_work("mse_loss", "float32", ELEMENTWISE_N, True), True),
        ("bce_with_logits fp32 2^28", elementwise_work("binary_cross_entropy_with_logits", "float32", ELEMENTWISE_N, True), True),
        ("cross_entropy fp32 4096x131072", cross_entropy_work(4096, 131072, "float32", True), True),
        ("linear_cross_entropy bf16", linear_cross_entropy_work(*LINEAR_CROSS_ENTROPY, True), True),
        ("cross_entropy all options bf16", cross_entropy_work(4096, 131072, "bfloat16", True, all_options=True), True),
        ("cross_entropy bf16 16384x32768", cross_entropy_work(16384, 32768, "bfloat16", False), False),
        ("cross_entropy fp32 16384x32768", cross_entropy_work(16384, 32768, "float32", False), False),
    ]
    for loss in ELEMENTWISE:
        for dtype in ("float32", "bfloat16"):
            if (loss, dtype) not in (("mse_loss", "float32"), ("binary_cross_entropy_with_logits", "float32")):
                work.append((f"{loss} {dtype} 2^28", elementwise_work(loss, dtype, ELEMENTWISE_N, False), False))
    return [(label, run) for label, run, headline in work if headline or not headline_only]


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


# ---- measurements, JSON and plot ---------------------------------------------------------------------------


class Recorder:
    """Measures providers and keeps every row; rewrites the JSON after each one (a deadline loses nothing)."""

    def __init__(self, json_path: Path | None, environment: dict[str, Any], copy: dict[str, float], repeats: int):
        self.json_path = json_path
        self.environment = environment
        self.copy = copy
        self.repeats = repeats
        self.results: list[dict[str, Any]] = []

    def measure(self, head: dict[str, Any], name: str, call: Callable[[], Any], bytes_moved: int) -> None:
        self.record({**head, **measure(name, call, bytes_moved, self.copy["gb_per_s"], self.repeats)})

    def record(self, row: dict[str, Any]) -> None:
        self.results.append(row)
        print_row(row)
        self.write()

    def write(self) -> None:
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            payload = {"environment": self.environment, "copy": self.copy, "results": self.results}
            self.json_path.write_text(json.dumps(payload, indent=1))


def plot(results: list[dict[str, Any]], path: Path, copy_gb_per_s: float) -> None:
    """One horizontal bar per measured (work, provider): GB/s, with the copy bandwidth as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if "gb_per_s" in r and r["loss"] != "linear_cross_entropy"]
    labels = [f"{r['loss']} {r.get('dtype', '')} {r.get('n')}{'x' + str(r['v']) if 'v' in r else ''} | {r['provider']}"
              for r in rows]
    figure, axis = plt.subplots(figsize=(11, max(2.0, 0.28 * len(rows) + 1)))
    axis.barh(range(len(rows)), [r["gb_per_s"] for r in rows],
              color=["tab:blue" if r["provider"].startswith("lossk") else "tab:gray" for r in rows])
    axis.set_yticks(range(len(rows)), labels, fontsize=7)
    axis.invert_yaxis()
    if copy_gb_per_s and math.isfinite(copy_gb_per_s):
        axis.axvline(copy_gb_per_s, color="tab:red", linestyle="--", label=f"device copy {copy_gb_per_s:.0f} GB/s")
        axis.legend(loc="lower right")
    axis.set_xlabel("GB/s (minimum bytes of a fused forward+backward)")
    axis.set_title("lossk CUDA kernels and their peers (one run)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def dry_run(args: argparse.Namespace) -> int:
    """No GPU: list the planned work and write the JSON and plot from stub figures (marked as such)."""
    labels = [label for label, _ in goals(args.headline)]
    results = [{"loss": label, "provider": "dry run", "ms": 1.0, "gb_per_s": 1000.0, "fraction_of_copy": 0.25,
                "extra_peak_mib": 0.0, "headline": i < 6, "stub": True} for i, label in enumerate(labels)]
    for label in labels:
        print(f"would measure: {label}")
    names = ("torch", "torch.compile", "torch.compile.formula", "liger", "cut-cross-entropy", "lossk.cupy")
    providers = {name: unavailable(name) for name in names}
    print("providers (reason when unavailable here):", providers)
    payload = {"environment": {"dry_run": True, "providers": providers}, "copy": {"gb_per_s": 4000.0}, "results": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1))
    if args.png:
        plot(results, args.png, 4000.0)
    return 0


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
    for module in ("torch", "cupy", "triton", "liger_kernel", "cut_cross_entropy", "numpy"):
        try:
            versions[module] = getattr(importlib.import_module(module), "__version__", "?")
        except ImportError:
            versions[module] = None
    return {"device": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability(), **versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every measurement here (rewritten after each one)")
    parser.add_argument("--png", type=Path, help="plot the measurements here")
    parser.add_argument("--headline", action="store_true", help="only the headline rows of the goals table")
    parser.add_argument("--sweep", action="store_true", help="also sweep the cross-entropy launch layouts")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: the plan, with stub figures")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if args.dry_run:
        return dry_run(args)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2
    lossk = import_lossk()
    env = environment()
    copy = copy_bandwidth(args.repeats)
    print(
        f"{env['device']} (sm_{env['capability'][0]}{env['capability'][1]}), torch {env['torch']}, "
        f"cupy {env['cupy']}, liger {env['liger_kernel']}, cut-cross-entropy {env['cut_cross_entropy']}"
    )
    print(f"device-to-device copy, 1 GiB: {copy['ms']:.3f} ms = {copy['gb_per_s']:.0f} GB/s (the ceiling)")
    recorder = Recorder(args.json, env, copy, args.repeats)
    try:
        for label, work in goals(args.headline):
            try:
                work(lossk, recorder)
            except Exception as error:  # noqa: BLE001 - one failing piece of work must not stop the rest
                recorder.record({"loss": label, "provider": "(setup)", "error": f"{type(error).__name__}: {error}",
                                 "trace": traceback.format_exc(limit=3)})
        if args.sweep:
            recorder.results += layout_sweep(lossk, CROSS_ENTROPY_SIZES, copy["gb_per_s"], args.repeats)
    except KeyboardInterrupt:  # the deadline of bench/gpu_check.sh: keep what was measured
        print("interrupted: writing what was measured", flush=True)
    finally:
        recorder.write()
        if args.png:
            plot(recorder.results, args.png, copy["gb_per_s"])
            print(f"wrote {args.png}")
    failed = [r for r in recorder.results if "error" in r and r["provider"].startswith("lossk")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
