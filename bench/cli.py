"""``python -m bench``: time every loss on lossk's backends and its peers, print tables, write JSON and a plot."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import hardware
from .cases import CASES, Shape, parse_size
from .plot import plot
from .progress import progress
from .providers import CPU, GPU, PROVIDERS, Provider
from .report import skipped_lines, table, to_json, write_json
from .run import Outcome, Settings, Skipped, run

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PROVIDER_GROUPS = {
    "lossk": [name for name, p in PROVIDERS.items() if not p.peer],
    "peers": [name for name, p in PROVIDERS.items() if p.peer],
}


def _name_list(valid: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names from ``valid``; anything else is a usage error."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in valid]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)} (choose from {', '.join(valid)})"
            )
        return names

    return parse


def _size_list(text: str) -> list[Shape]:
    try:
        return [parse_size(token) for token in text.split(",") if token.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"invalid size in {text!r} ({error}); write sizes like 2^20, 1048576, 1e6 or 2048x32768"
        ) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time forward+backward of each loss on lossk's backends and on the peers a user would pick "
        "instead; print a table per loss, write the results as JSON and a PNG plot.",
        epilog="Sizes: a number n is n elements (for the cross-entropies: n logits, V = min(n, 32768) classes); "
        "NxV gives the rows and classes (N*V elements for the elementwise losses; H = 512 for "
        "linear_cross_entropy), NxHxV also the hidden size.",
    )
    p.add_argument("--quick", action="store_true", help="a small sweep, fewer repeats (under a minute on 2 cores)")
    device = p.add_mutually_exclusive_group()
    device.add_argument("--cpu", dest="device", action="store_const", const=CPU, help="benchmark on the CPU")
    device.add_argument(
        "--gpu",
        dest="device",
        action="store_const",
        const=GPU,
        help="benchmark on the GPU (the default where one is found)",
    )
    p.add_argument(
        "--loss",
        action="extend",
        type=_name_list(list(CASES), "loss"),
        metavar="LOSS[,LOSS]",
        help=f"losses to time (default: all): {', '.join(CASES)}",
    )
    p.add_argument(
        "--sizes",
        action="extend",
        type=_size_list,
        metavar="SIZE[,SIZE]",
        help="sizes to time instead of the default sweep",
    )
    provider_names = [*PROVIDERS, *PROVIDER_GROUPS]
    p.add_argument(
        "--providers",
        action="extend",
        type=_name_list(provider_names, "provider"),
        metavar="NAME[,NAME]",
        help=f"providers to time (default: all that run on the device): {', '.join(provider_names)}",
    )
    p.add_argument("--repeats", type=_positive_int, help="timed calls per measurement (default 10, --quick 5)")
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where results JSON and PNG go (default: bench/results/)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def select_providers(requested: list[str] | None, device: str) -> tuple[list[Provider], list[Skipped]]:
    """The providers to run on ``device``, and those skipped (not installed, wrong device, not by default)."""
    if requested:
        names = list(dict.fromkeys(n for name in requested for n in PROVIDER_GROUPS.get(name, [name])))
    else:
        names = list(PROVIDERS)
    chosen, skipped = [], []
    for name in names:
        provider = PROVIDERS[name]
        reason = provider.unavailable(device)
        if reason is None and not requested:
            reason = provider.not_by_default(device)
        if reason is None:
            chosen.append(provider)
        else:
            skipped.append(Skipped(name, None, reason))
    return chosen, skipped


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.perf_counter()
    machine = hardware.detect()
    device = args.device or (GPU if machine.gpu_model else CPU)
    if device == GPU and machine.gpu_model is None:
        parser().error("--gpu: no CUDA GPU found (looked through CuPy and PyTorch)")
    versions = hardware.library_versions()
    print(f"lossk bench on the {device.upper()}. {machine.summary()}")
    print("versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()))

    copy_gbs = hardware.copy_bandwidth(device, quick=args.quick)
    how = "NumPy copyto, one slice per core" if device == CPU else "device-to-device copy"
    print(f"copy bandwidth ({how}; bytes read + written): {copy_gbs:.1f} GB/s")

    cases = [CASES[name] for name in dict.fromkeys(args.loss or CASES)]
    sizes = {
        case.name: list(dict.fromkeys(case.layout.shape(s) for s in args.sizes))
        if args.sizes
        else case.layout.sweep(quick=args.quick, gpu=device == GPU)
        for case in cases
    }
    providers, skipped = select_providers(args.providers, device)
    print("providers: " + (", ".join(p.name for p in providers) or "none"))
    for line in skipped_lines(Outcome(skipped=skipped)):
        print(line)
    # The first call (compilation, first-touch page faults) is never timed; --quick adds no further warm-up.
    settings = Settings(
        device,
        warmup=0 if args.quick else 1,
        repeats=args.repeats or (5 if args.quick else 10),
        budget_s=0.25 if args.quick else 1.0,
    )

    total = sum(len(sizes[case.name]) for case in cases) * len(providers)
    with progress(total, enabled=args.progress) as step:
        outcome = run(cases, sizes, providers, settings, copy_gbs, on_step=step)
    skipped_per_loss = list(outcome.skipped)
    outcome.skipped[:0] = skipped

    print()
    for case in cases:
        measured = [m for m in outcome.measurements if m.loss == case.name]
        if measured:
            print(table(case, measured, copy_gbs))
            print()
    for line in skipped_lines(Outcome(skipped=skipped_per_loss, failed=outcome.failed)):
        print(line)

    args.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out / f"bench-{device}.json", args.out / f"bench-{device}.png"
    metadata = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)],
        "device": device,
        "hardware": dataclasses.asdict(machine),
        "versions": versions,
        "copy_bandwidth_gbs": copy_gbs,
        "settings": {"quick": args.quick, **dataclasses.asdict(settings)},
        "providers": {p.name: p.description for p in providers},
    }
    write_json(to_json(outcome, metadata), json_path)
    if outcome.measurements:
        plot(outcome.measurements, copy_gbs, f"lossk bench on the {device.upper()}. {machine.summary()}", png_path)
        print(f"wrote {json_path} and {png_path} ({time.perf_counter() - started:.0f} s)")
    else:
        png_path.unlink(missing_ok=True)
        print(f"nothing was measured; wrote {json_path}")
    return 1 if outcome.failed else 0
