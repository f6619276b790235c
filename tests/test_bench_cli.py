"""``python -m bench`` end to end: the JSON and PNG it writes, its usage errors, and skipped providers."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from bench.cases import CASES

REPO_ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def bench_main(monkeypatch: pytest.MonkeyPatch) -> Callable[[Sequence[str]], int]:
    """``bench.cli.main``, importable however pytest was started (``bench`` is not an installed package)."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    from bench.cli import main

    return main


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_quick_run_writes_json_naming_every_provider_and_a_png(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--cpu",
        "--sizes",
        "4096",
        "--repeats",
        "2",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    finished = subprocess.run(command, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr

    document = json.loads((tmp_path / "bench-cpu.json").read_text())
    ran = document["providers_run"]
    expected = {"lossk.array_api", "numpy"} | {
        name
        for name, module in (("torch", "torch"), ("torch.chunked", "torch"), ("jax", "jax"), ("lossk.numba", "numba"),
                             ("lossk.numba.hessian", "numba"), ("lossk.torch", "torch"), ("lossk.jax", "jax"))
        if importlib.util.find_spec(module)
    }
    assert set(ran) == expected
    assert {r["provider"] for r in document["results"]} == set(ran)
    # every loss of the spec table has a row (bench.cases builds them from lossk._losses), and the others
    assert {r["loss"] for r in document["results"]} == set(CASES)
    assert {"mse", "l1", "huber", "smooth_l1", "bce_with_logits", "log_cosh", "cross_entropy",
            "linear_cross_entropy"} <= set(CASES)
    assert all(r["loss_matches"] and r["gbs"] > 0 and r["elements"] == 4096 for r in document["results"])
    if "lossk.numba.hessian" in ran:  # every loss, the multi-input ones and linear_cross_entropy included
        hessian_rows = {r["loss"] for r in document["results"] if r["provider"] == "lossk.numba.hessian"}
        assert hessian_rows == set(CASES)
    skipped = {s["provider"] for s in document["skipped"] if s["loss"] is None}
    assert {"lossk.cupy", "cupy", "liger", "torch.compile"} <= skipped
    assert document["failed"] == []
    assert document["copy_bandwidth_gbs"] > 0
    for name in ran:
        assert name in finished.stdout
    assert "vs best peer" in finished.stdout

    width, height = png_size(tmp_path / "bench-cpu.png")
    assert 400 <= width <= 4000 and 300 <= height <= 4000
    assert (tmp_path / "bench-cpu.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--fast"], "unrecognized arguments: --fast"),
        (["--loss", "mse,hinge"], "unknown loss 'hinge' (choose from mse, l1, huber, smooth_l1, bce_with_logits"),
        (["--providers", "tensorflow"], "unknown provider 'tensorflow' (choose from lossk.array_api"),
        (["--sizes", "2^20,big"], "invalid size in '2^20,big'"),
        (["--repeats", "0"], "must be a positive integer"),
        (["--cpu", "--gpu"], "not allowed with argument"),
    ],
)
def test_usage_errors_name_the_problem_and_exit_2(
    bench_main: Callable[[Sequence[str]], int],
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_main(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_gpu_without_a_gpu_is_a_usage_error(
    bench_main: Callable[[Sequence[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import hardware

    if hardware.gpu_model() is not None:
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--gpu"])
    assert exit_info.value.code == 2
    assert "no CUDA GPU found" in capsys.readouterr().err


def test_missing_library_is_reported_as_skipped(
    bench_main: Callable[[Sequence[str]], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax now raises ImportError
    code = bench_main(
        [
            "--cpu",
            "--loss",
            "mse",
            "--sizes",
            "1024",
            "--providers",
            "numpy,jax,liger",
            "--repeats",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    document = json.loads((tmp_path / "bench-cpu.json").read_text())
    assert document["providers_run"] == ["numpy"]
    assert {"provider": "jax", "loss": None, "reason": "jax is not installed"} in document["skipped"]
    assert {"provider": "liger", "loss": None, "reason": "runs on GPU only"} in document["skipped"]
    output = capsys.readouterr().out
    assert "skipped jax: jax is not installed" in output
    assert "skipped liger: runs on GPU only" in output
