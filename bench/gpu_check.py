"""The Python half of ``bench/gpu_check.sh``: environment, test selection, sanitizer cases, determinism, summary.

``gpu_check.sh`` runs each step under a hard deadline and calls this module for everything that is not a
shell one-liner. Every subcommand also has a *stub* form used by ``--dry-run`` (no GPU): it writes the
files the real step writes, in the same format, so that the summary and the rerun selection are exercised
on the CPU (``tests/test_gpu_check.py``).

Files under the output folder (the device tool returns at most 8 files, two folders deep at most):

==================  =================================================================================
``state.json``      environment, each step's status and seconds, the failed test ids, the rerun plan
``junit.xml``       ``pytest -m gpu`` (JUnit XML)
``failures.txt``    one line per failed test, sanitizer error or determinism mismatch
``sanitizer.txt``   compute-sanitizer memcheck and racecheck output (the tail of each, when long)
``bench.json``      every benchmark measurement (``bench/gpu_benchmark.py``), rewritten as it goes
``bench.png``       the benchmark plot
``determinism.json`` bit-identical loss and gradient over 3 runs per kernel family
``log.txt``         the whole run's output
==================  =================================================================================
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GPU_TESTS = ("tests/test_cuda_gpu.py", "tests/test_cuda_gpu_multi_input.py")
OUTPUT_FILES = ("state.json", "junit.xml", "failures.txt", "sanitizer.txt", "bench.json", "bench.png",
                "determinism.json", "log.txt")
VERSIONS = ("torch", "cupy", "triton", "numpy", "ml_dtypes", "array_api_compat", "liger_kernel", "cut_cross_entropy",
            "pytest", "xdist", "hypothesis")


# ---- state -------------------------------------------------------------------------------------------------


SKIPPED = -1
"""The status gpu_check.sh records for a step a rerun leaves out (nothing of it failed before)."""


def read_state(folder: Path) -> dict[str, Any]:
    path = folder / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {"steps": {}}


def write_state(folder: Path, state: dict[str, Any]) -> None:
    (folder / "state.json").write_text(json.dumps(state, indent=1))


def record_step(folder: Path, step: str, status: int, seconds: float, deadline: int) -> None:
    """Adds a step's exit status (124: its deadline passed) to ``state.json``."""
    state = read_state(folder)
    if status == SKIPPED:
        verdict = "skipped"
    else:
        verdict = "passed" if status == 0 else ("timed out" if status in (124, 137) else "failed")
    state["steps"][step] = {"status": status, "verdict": verdict, "seconds": round(seconds, 1), "deadline": deadline}
    write_state(folder, state)


def append_failures(folder: Path, lines: list[str]) -> None:
    with (folder / "failures.txt").open("a") as handle:
        for line in lines:
            handle.write(line.replace("\n", " ")[:400] + "\n")


# ---- step 1: environment ----------------------------------------------------------------------------------------


def environment(stub: bool) -> dict[str, Any]:
    """The GPU, driver and library versions (a stub on a machine without a GPU)."""
    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(), "versions": {}}
    for module in VERSIONS:
        try:
            env["versions"][module] = getattr(importlib.import_module(module), "__version__", "?")
        except Exception as error:  # noqa: BLE001 - a missing or broken package is recorded, not fatal
            env["versions"][module] = f"missing ({type(error).__name__})"
    try:
        import lossk._kernels.cuda  # noqa: F401 - the CUDA sources must be found as a package

        env["lossk_kernels"] = "importable"
    except Exception as error:  # noqa: BLE001
        env["lossk_kernels"] = f"not importable: {type(error).__name__}: {error}"
    if stub:
        env["gpu"] = {"name": "dry run: no GPU", "capability": None}
        return env
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw"
        result = subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                                text=True, check=False)
        env["nvidia_smi"] = result.stdout.strip() or result.stderr.strip()
    import torch

    env["gpu"] = {
        "name": torch.cuda.get_device_name(),
        "capability": list(torch.cuda.get_device_capability()),
        "sms": torch.cuda.get_device_properties(0).multi_processor_count,
        "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        "torch_cuda": torch.version.cuda,
    }
    for tool in ("nvcc", "compute-sanitizer", "ncu"):
        env.setdefault("tools", {})[tool] = shutil.which(tool)
    return env


# ---- step 2: the GPU tests ------------------------------------------------------------------------------------------


def junit_results(path: Path) -> dict[str, list[str]]:
    """Test ids of a JUnit XML file by outcome: passed, failed (failures and errors), skipped."""
    outcome: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    if not path.is_file():
        return outcome
    for case in ElementTree.parse(path).iter("testcase"):
        test_id = node_id(case.get("classname", ""), case.get("name", ""), case.get("file"))
        if case.find("failure") is not None or case.find("error") is not None:
            outcome["failed"].append(test_id)
        elif case.find("skipped") is not None:
            outcome["skipped"].append(test_id)
        else:
            outcome["passed"].append(test_id)
    return outcome


def node_id(classname: str, name: str, file: str | None = None) -> str:
    """pytest's node id from JUnit's classname ('tests.test_cuda_gpu') and name ('test_x[a-b]')."""
    parts = classname.split(".")
    # the module path ends at the first part that starts with "test_" (classes may follow)
    for i, part in enumerate(parts):
        if part.startswith("test_"):
            module = "/".join(parts[: i + 1]) + ".py"
            classes = parts[i + 1 :]
            return "::".join([file or module, *classes, name])
    return "::".join([file or classname, name])


def junit_failure_lines(path: Path) -> list[str]:
    """One line per failed test: its id and the first line of the message."""
    lines = []
    if not path.is_file():
        return [f"pytest: no JUnit file at {path.name} (the step crashed or timed out before writing it)"]
    for case in ElementTree.parse(path).iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            continue
        message = (problem.get("message") or problem.text or "").strip().splitlines()
        test_id = node_id(case.get("classname", ""), case.get("name", ""), case.get("file"))
        lines.append(f"FAILED {test_id} - {message[0] if message else ''}")
    return lines


def pytest_selection(previous: Path | None, all_ids: Callable[[], list[str]]) -> list[str] | None:
    """What a rerun's pytest step runs: None for the whole GPU suite; else the ids that failed, plus every
    id not reached when the previous step did not finish. An empty list: nothing to rerun."""
    if previous is None:
        return None
    state = read_state(previous)
    results = junit_results(previous / "junit.xml")
    step = state["steps"].get("pytest", {})
    if not results["passed"] and not results["failed"]:
        return None  # nothing was recorded: run everything
    if step.get("verdict") in ("passed", "failed"):
        return results["failed"]
    done = set(results["passed"]) | set(results["skipped"])
    return [test for test in all_ids() if test not in done]


def collect_gpu_tests() -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu", "-o", "addopts=", "-p", "no:cacheprovider",
         *GPU_TESTS], capture_output=True, text=True, cwd=ROOT, check=False,
    )
    return [line.strip() for line in result.stdout.splitlines() if "::" in line]


def stub_junit(path: Path) -> None:
    """A JUnit file in pytest's format, with one passing, one failing and one skipped GPU test."""
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" '
        'skipped="1" tests="3" time="0.1">'
        '<testcase classname="tests.test_cuda_gpu" name="test_repeated_runs_are_bit_identical[mse_loss]" time="0.01"/>'
        '<testcase classname="tests.test_cuda_gpu" name="test_matches_pytorch_on_the_gpu[huber_loss-float32]" '
        'time="0.01"><failure message="AssertionError: dry run: a stub failure">stub</failure></testcase>'
        '<testcase classname="tests.test_cuda_gpu" name="test_more_than_2_31_elements" time="0.0">'
        '<skipped message="dry run">stub</skipped></testcase></testsuite></testsuites>'
    )


# ---- step 3: sanitizer cases -----------------------------------------------------------------------------------------

SANITIZER_CASES: dict[str, tuple[str, tuple[int, ...], dict[str, Any]]] = {
    # one elementwise loss (odd size: vector body and scalar tail), with a weight view and grad_output
    "mse_loss": ("mse_loss", (1031, 17), {}),
    # cross-entropy in each layout and cluster size (float32 rows; the plan picks the cluster from the size)
    "cross_entropy-thread_per_row": ("cross_entropy", (257, 7, 5), {"label_smoothing": 0.1}),
    "cross_entropy-streamed-strided": ("cross_entropy", (1, 5000, 3), {}),
    "cross_entropy-shared-misaligned": ("cross_entropy", (7, 1001), {}),
    "cross_entropy-streamed-probabilities": ("cross_entropy", (33, 1500), {"probability": True}),
    "cross_entropy-shared-1": ("cross_entropy", (65, 4000), {"z_loss": 1e-4, "softcap": 30.0}),
    "cross_entropy-shared-2": ("cross_entropy", (17, 20000), {"label_smoothing": 0.1, "weight": True}),
    "cross_entropy-shared-4": ("cross_entropy", (9, 40001), {}),
    "cross_entropy-shared-8": ("cross_entropy", (5, 100000), {"inplace": True}),
    "cross_entropy-streamed-long": ("cross_entropy", (3, 2**21), {}),
    "cross_entropy-forward-only": ("cross_entropy", (65, 4000), {"forward_only": True}),
    "nll_loss": ("nll_loss", (129, 33, 3), {"weight": True}),
    # multi_input.cu (odd size: vector body and scalar tail; a broadcast var), and the row-mean elementwise loss
    "gaussian_nll_loss": ("gaussian_nll_loss", (1031, 17), {"broadcast": "var"}),
    "margin_ranking_loss": ("margin_ranking_loss", (1031, 17), {}),
    "multilabel_soft_margin_loss": ("multilabel_soft_margin_loss", (1031, 17), {"weight": True}),
}
"""Small inputs, one of each kernel path: compute-sanitizer slows every launch by orders of magnitude."""


def run_sanitizer_cases(names: list[str]) -> int:
    """Runs the named cases once each on CuPy arrays (this process is the one compute-sanitizer watches)."""
    import cupy
    import numpy as np

    import lossk

    # every array its own cudaMalloc: inside a memory pool's chunk an out-of-bounds access goes unseen
    cupy.cuda.set_allocator(None)
    cupy.cuda.set_pinned_memory_allocator(None)
    rng = np.random.default_rng(0)
    for name in names:
        loss, shape, options = SANITIZER_CASES[name]
        options = dict(options)
        x = cupy.asarray(rng.normal(size=shape).astype(np.float32))
        if loss == "mse_loss":
            y = cupy.asarray(rng.normal(size=shape).astype(np.float32))
            lossk.mse_loss.value_and_grad(x, y, backend="cupy", grad_output=cupy.asarray(2.0, np.float32))
            lossk.huber_loss.value_and_grad(x, y, backend="cupy", reduction="none", grad_output=cupy.ones_like(x))
        elif loss == "cross_entropy":
            rows_shape = (shape[0], *shape[2:])
            if options.pop("probability", False):
                y = cupy.asarray(rng.dirichlet(np.ones(shape[1]), size=shape[0]).astype(np.float32))
            else:
                y = cupy.asarray(rng.integers(0, shape[1], rows_shape))
                y.reshape(-1)[:1] = -100  # one ignored row
            if options.pop("weight", False):
                options["weight"] = cupy.asarray(rng.uniform(size=shape[1]).astype(np.float32))
            if options.pop("forward_only", False):
                lossk.cross_entropy(x, y, backend="cupy", **options)
            else:
                for reduction in ("mean", "none"):
                    lossk.cross_entropy.value_and_grad(x.copy(), y, backend="cupy", reduction=reduction, **options)
        elif loss in MULTI_INPUT:
            arrays, options = multi_input_arrays(loss, shape, options, rng)
            for reduction in ("mean", "none"):
                getattr(lossk, loss).value_and_grad(*arrays, backend="cupy", reduction=reduction, **options)
        else:
            y = cupy.asarray(rng.integers(0, shape[1], (shape[0], *shape[2:])))
            weight = cupy.asarray(rng.uniform(size=shape[1]).astype(np.float32))
            for reduction in ("mean", "none"):
                lossk.nll_loss.value_and_grad(x, y, backend="cupy", reduction=reduction, weight=weight)
        cupy.cuda.Device().synchronize()
        print(f"sanitizer case {name}: ran", flush=True)
    return 0


def sanitizer_selection(previous: Path | None) -> list[str]:
    """Every case, or on a rerun those named in the previous run's failures (all of them if the step did not
    finish)."""
    if previous is None:
        return list(SANITIZER_CASES)
    step = read_state(previous)["steps"]
    if all(step.get(f"sanitizer-{tool}", {}).get("verdict") == "passed" for tool in ("memcheck", "racecheck")):
        return []
    return list(SANITIZER_CASES)  # the tools' reports do not name a case reliably: all of them, they are small


# ---- step 5: determinism -------------------------------------------------------------------------------------------

DETERMINISM_FAMILIES: dict[str, tuple[str, tuple[int, ...], dict[str, Any]]] = {
    "elementwise mse_loss": ("mse_loss", (2**22 + 3,), {}),
    "elementwise binary_cross_entropy_with_logits": ("binary_cross_entropy_with_logits", (2**22 + 3,), {}),
    "elementwise huber_loss weighted mean": ("huber_loss", (4097, 1025), {"weight": True}),
    "cross_entropy thread per row": ("cross_entropy", (4099, 9, 7), {}),
    "cross_entropy rows in shared memory": ("cross_entropy", (3001, 1031), {"label_smoothing": 0.1}),
    "cross_entropy cluster of 8": ("cross_entropy", (257, 131072), {"z_loss": 1e-4}),
    "cross_entropy streamed (probabilities)": ("cross_entropy", (513, 2000), {"probability": True}),
    "nll_loss": ("nll_loss", (3001, 1031), {}),
    "multi_input gaussian_nll_loss": ("gaussian_nll_loss", (2**22 + 3,), {}),
    "multi_input gaussian_nll_loss, var per row": ("gaussian_nll_loss", (4097, 1025), {"broadcast": "var"}),
    "multi_input margin_ranking_loss": ("margin_ranking_loss", (2**22 + 3,), {}),
    "row mean multilabel_soft_margin_loss": ("multilabel_soft_margin_loss", (4097, 1025), {"weight": True}),
}

MULTI_INPUT = ("gaussian_nll_loss", "margin_ranking_loss", "multilabel_soft_margin_loss")
"""The losses of ``lossk._losses.multi_input`` (their inputs drawn from their specs' domains)."""


def multi_input_arrays(loss: str, shape: tuple[int, ...], options: dict[str, Any], rng: Any) -> tuple[tuple, dict]:
    """CuPy float32 inputs of a multi-input loss, drawn from its spec's domain, and its options: ``broadcast``
    names an input given with its last axis of length 1, ``weight`` asks for class weights."""
    import cupy
    import numpy as np

    from lossk._losses.multi_input import LOSSES

    spec = next(s for s in LOSSES if s.name == loss)
    options = dict(options)
    broadcast = options.pop("broadcast", None)
    drawn = spec.domain.draw(rng, shape, {o.name: o.default for o in spec.keyword_options}, True)
    arrays = tuple(
        cupy.asarray(drawn[name][..., :1] if name == broadcast else drawn[name], dtype=np.float32) for name in spec.inputs
    )
    if options.pop("weight", False):
        options["weight"] = cupy.asarray(rng.uniform(size=shape[-1]).astype(np.float32))
    return arrays, options


def check_determinism(names: list[str], runs: int = 3) -> dict[str, Any]:
    """Each family ``runs`` times on the same inputs: are the loss and gradient bytes identical?"""
    import numpy as np

    rng = np.random.default_rng(1)
    report: dict[str, Any] = {}
    for name in names:
        try:
            report[name] = _determinism_of(name, runs, rng)
        except Exception as error:  # noqa: BLE001 - a family that fails is reported, the others still run
            report[name] = {"loss_identical": False, "grad_identical": False, "error": f"{type(error).__name__}: {error}"}
        print(f"determinism {name}: {report[name]}", flush=True)
    return report


def _determinism_of(name: str, runs: int, rng: Any) -> dict[str, Any]:
    """One family of DETERMINISM_FAMILIES, ``runs`` times on fresh inputs from ``rng``."""
    import cupy
    import numpy as np

    import lossk

    loss, shape, options = DETERMINISM_FAMILIES[name]
    if loss in MULTI_INPUT:
        arrays, options = multi_input_arrays(loss, shape, options, rng)
        results = [getattr(lossk, loss).value_and_grad(*arrays, backend="cupy", **options) for _ in range(runs)]
        grad_bytes = {b"".join(g.get().tobytes() for g in (r[1] if isinstance(r[1], tuple) else (r[1],)))
                      for r in results}
        return {"loss_identical": len({r[0].get().tobytes() for r in results}) == 1,
                "grad_identical": len(grad_bytes) == 1, "loss": float(results[0][0].get()), "runs": runs}
    options = dict(options)
    x = cupy.asarray(rng.normal(size=shape).astype(np.float32))
    if loss in ("cross_entropy", "nll_loss"):
        if options.pop("probability", False):
            y = cupy.asarray(rng.dirichlet(np.ones(shape[1]), size=shape[0]).astype(np.float32))
        else:
            y = cupy.asarray(rng.integers(0, shape[1], (shape[0], *shape[2:])))
    else:
        y = cupy.asarray(rng.uniform(size=shape).astype(np.float32))
    if options.pop("weight", False):
        options["weight"] = cupy.asarray(rng.uniform(size=shape).astype(np.float32))
    results = [getattr(lossk, loss).value_and_grad(x, y, backend="cupy", **options) for _ in range(runs)]
    losses = {r[0].get().tobytes() for r in results}
    grads = {r[1].get().tobytes() for r in results}
    return {"loss_identical": len(losses) == 1, "grad_identical": len(grads) == 1,
            "loss": float(results[0][0].get()), "runs": runs}


def determinism_selection(previous: Path | None) -> list[str]:
    if previous is None or not (previous / "determinism.json").is_file():
        return list(DETERMINISM_FAMILIES)
    report = json.loads((previous / "determinism.json").read_text())
    return [n for n in DETERMINISM_FAMILIES if not (report.get(n, {}).get("loss_identical")
                                                    and report.get(n, {}).get("grad_identical"))]


def stub_determinism(names: list[str]) -> dict[str, Any]:
    return {n: {"loss_identical": True, "grad_identical": True, "loss": 0.0, "runs": 3, "stub": True} for n in names}


# ---- summary -------------------------------------------------------------------------------------------------------


def summary(folder: Path) -> str:
    """The table printed last (the device tool returns the end of the output)."""
    state = read_state(folder)
    lines = ["", "==== gpu_check summary ===="]
    gpu = state.get("environment", {}).get("gpu", {})
    lines.append(f"GPU: {gpu.get('name')} capability {gpu.get('capability')}; mode {state.get('mode')}")
    total = 0.0
    for step, info in state["steps"].items():
        total += info["seconds"]
        lines.append(f"  {step:<22} {info['verdict']:<10} {info['seconds']:>6.1f} s of {info['deadline']} s")
    lines.append(f"  {'total':<22} {'':<10} {total:>6.1f} s")
    results = junit_results(folder / "junit.xml")
    lines.append(f"pytest: {len(results['passed'])} passed, {len(results['failed'])} failed, "
                 f"{len(results['skipped'])} skipped")
    failures = (folder / "failures.txt").read_text().splitlines() if (folder / "failures.txt").is_file() else []
    lines += [f"  {line}" for line in failures[:30]]
    if len(failures) > 30:
        lines.append(f"  ... {len(failures) - 30} more in failures.txt")
    bench = folder / "bench.json"
    if bench.is_file():
        data = json.loads(bench.read_text())
        copy = data.get("copy", {}).get("gb_per_s")
        lines.append(f"bench: {len(data.get('results', []))} measurements; copy {copy} GB/s")
        for row in data.get("results", []):
            if row.get("headline"):
                size = f"{row.get('n')}x{row.get('v')}" if "v" in row else str(row.get("n"))
                value = row.get("error") or f"{row.get('ms')} ms {row.get('gb_per_s')} GB/s {row.get('fraction_of_copy')}"
                lines.append(f"  {row['loss']:<24} {row.get('dtype', ''):<9} {size:<14} {row['provider']:<28} {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="helpers of bench/gpu_check.sh")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("environment", "pytest-args", "failures", "sanitize", "sanitize-cases", "determinism", "summary",
                 "record", "stub-junit"):
        command = sub.add_parser(name)
        command.add_argument("--out", type=Path, required=True)
        command.add_argument("--previous", type=Path, default=None)
        command.add_argument("--stub", action="store_true")
        command.add_argument("--mode", default="full")
        command.add_argument("rest", nargs="*")
    args = parser.parse_args(argv)
    out: Path = args.out
    previous = args.previous if args.previous and args.previous.is_dir() else None
    if args.command == "environment":
        state = read_state(out)
        state["environment"] = environment(args.stub)
        state["mode"] = args.mode
        write_state(out, state)
        print(json.dumps(state["environment"], indent=1))
        return 0
    if args.command == "pytest-args":
        # writes the tests to run, one per line, into the file named; exit status 3 when there is none
        selection = pytest_selection(previous, collect_gpu_tests)
        lines = list(GPU_TESTS) if selection is None else selection
        (Path(args.rest[0])).write_text("\n".join(lines) + "\n")
        state = read_state(out)
        state["pytest_selection"] = "all" if selection is None else len(selection)
        write_state(out, state)
        print(f"pytest selection: {'the whole GPU suite' if selection is None else f'{len(selection)} tests'}")
        return 3 if selection == [] else 0
    if args.command == "failures":
        append_failures(out, junit_failure_lines(out / "junit.xml"))
        return 0
    if args.command == "stub-junit":
        stub_junit(out / "junit.xml")
        return 0
    if args.command == "sanitize-cases":
        print(" ".join(sanitizer_selection(previous)))
        return 0
    if args.command == "sanitize":
        return run_sanitizer_cases(args.rest or list(SANITIZER_CASES))
    if args.command == "determinism":
        names = determinism_selection(previous)
        report = stub_determinism(names) if args.stub else check_determinism(names)
        (out / "determinism.json").write_text(json.dumps(report, indent=1))
        bad = [n for n, r in report.items() if not (r["loss_identical"] and r["grad_identical"])]
        append_failures(out, [f"DETERMINISM {n}: results differ between runs" for n in bad])
        return 1 if bad else 0
    if args.command == "record":
        step, status, seconds, deadline = args.rest
        record_step(out, step, int(status), float(seconds), int(deadline))
        return 0
    if args.command == "summary":
        print(summary(out))
        return 0
    return 2


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
