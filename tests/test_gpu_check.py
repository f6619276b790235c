"""``bench/gpu_check.sh``, the one command the GPU machine runs, in its dry-run mode (no GPU needed).

The dry run resolves every step (the wheels to install, the GPU tests pytest collects, the sanitizer cases,
the benchmark plan) and writes each output file from stubs in the real format, so these tests prove that a
run produces exactly the files the device tool returns (8 at most, under 16 MiB each), that the summary
and the rerun selection read them, and that the deadlines fit the 6 minutes of one run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"
sys.path.insert(0, str(ROOT))

from bench import gpu_check  # noqa: E402 - the checkout's bench package

RUN_SECONDS = 360
BOOKKEEPING_SECONDS = 10
"""What the script does between steps (recording, the summary), kept out of the steps' deadlines."""
WHEELS = ("array_api_compat", "liger_kernel", "cut_cross_entropy")


def run_script(*arguments: str, out: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *arguments], capture_output=True, text=True, cwd=ROOT,
                          env=environment, timeout=600, check=False)


def test_deadlines_fit_one_run_of_six_minutes() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "--deadlines"], capture_output=True, text=True, check=True)
    deadlines = dict(line.split() for line in result.stdout.splitlines())
    kill_after = int(deadlines.pop("kill-after"))
    assert set(deadlines) == {"environment", "pytest", "sanitizer-memcheck", "sanitizer-racecheck", "bench",
                              "determinism"}
    worst = sum(int(v) + kill_after for v in deadlines.values())
    assert worst + BOOKKEEPING_SECONDS <= RUN_SECONDS, deadlines


def test_the_wheels_for_the_gpu_machine_are_downloaded() -> None:
    """Reported as skipped where .whl/ is absent (CI, a fresh clone): it is git-ignored and downloaded only
    before a GPU session; where it exists, every wheel must be there and named as the script expects."""
    if not (ROOT / ".whl").is_dir():
        pytest.skip("no .whl/ here (git-ignored; downloaded before a GPU session, bench/GPU.md)")
    missing = [name for name in WHEELS if not any((ROOT / ".whl").glob(f"{name}-*.whl"))]
    assert not missing, f"download {missing} into .whl/ before a GPU run (bench/GPU.md)"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("gpu_check_out")
    return run_script("--dry-run", out=out), out


def test_dry_run_writes_every_output_the_device_tool_returns(dry_run: tuple[subprocess.CompletedProcess[str], Path]
                                                             ) -> None:
    result, out = dry_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(gpu_check.OUTPUT_FILES)  # the device tool returns 8 files at most
    assert all((out / f).is_file() and (out / f).stat().st_size < 16 << 20 for f in files)

    state = json.loads((out / "state.json").read_text())
    assert list(state["steps"]) == ["environment", "pytest", "sanitizer-memcheck", "sanitizer-racecheck", "bench",
                                    "determinism"]
    assert state["steps"]["pytest"]["verdict"] == "failed"  # the stub JUnit file holds one failure
    assert all(state["steps"][s]["verdict"] == "passed" for s in state["steps"] if s != "pytest"), state["steps"]
    assert state["environment"]["lossk_kernels"] == "importable"
    assert state["pytest_selection"] == "all"

    cases = list(ElementTree.parse(out / "junit.xml").iter("testcase"))
    assert len(cases) == 3
    failures = (out / "failures.txt").read_text().splitlines()
    assert failures == ["FAILED tests/test_cuda_gpu.py::test_matches_pytorch_on_the_gpu[huber_loss-float32] - "
                        "AssertionError: dry run: a stub failure"]
    bench = json.loads((out / "bench.json").read_text())
    assert len(bench["results"]) == len(gpu_check_goals(headline=False)) and bench["environment"]["dry_run"]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    determinism = json.loads((out / "determinism.json").read_text())
    assert set(determinism) == set(gpu_check.DETERMINISM_FAMILIES)
    assert "compute-sanitizer --tool memcheck" in (out / "sanitizer.txt").read_text()
    log = (out / "log.txt").read_text()
    assert "==== gpu_check summary ====" in result.stdout and "[pytest] deadline" in log


def gpu_check_goals(headline: bool) -> list[str]:
    from bench import gpu_benchmark

    return [label for label, _ in gpu_benchmark.goals(headline)]


def test_rerun_repeats_only_what_failed_and_the_headline(dry_run: tuple[subprocess.CompletedProcess[str], Path],
                                                         tmp_path: Path) -> None:
    _, first = dry_run
    previous = tmp_path / "previous"
    shutil.copytree(first, previous)
    out = tmp_path / "out"
    result = run_script("--dry-run", "--rerun", "--previous", str(previous), out=out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert state["mode"] == "rerun" and state["pytest_selection"] == 1  # the one failed test
    assert "1 test collected" in result.stdout or "1 tests collected" in result.stdout
    bench = json.loads((out / "bench.json").read_text())
    assert [r["loss"] for r in bench["results"]] == gpu_check_goals(headline=True)
    assert json.loads((out / "determinism.json").read_text()) == {}  # every family was identical before
    assert "nothing failed before" in result.stdout  # the sanitizer cases passed before


def test_rerun_needs_the_previous_files(tmp_path: Path) -> None:
    result = run_script("--dry-run", "--rerun", "--previous", str(tmp_path / "none"), out=tmp_path / "out")
    assert result.returncode == 2 and "state.json missing" in result.stderr


# ---- the helpers, on hand-made files ---------------------------------------------------------------------------


def test_node_ids_from_junit_names() -> None:
    assert gpu_check.node_id("tests.test_cuda_gpu", "test_x[a-b]") == "tests/test_cuda_gpu.py::test_x[a-b]"
    assert gpu_check.node_id("tests.test_cuda_gpu.TestThing", "test_y") == "tests/test_cuda_gpu.py::TestThing::test_y"


def test_a_timed_out_pytest_step_reruns_every_test_not_passed(tmp_path: Path) -> None:
    gpu_check.stub_junit(tmp_path / "junit.xml")
    gpu_check.record_step(tmp_path, "pytest", 124, 115.0, 115)
    every = ["tests/test_cuda_gpu.py::test_repeated_runs_are_bit_identical[mse_loss]",
             "tests/test_cuda_gpu.py::test_matches_pytorch_on_the_gpu[huber_loss-float32]",
             "tests/test_cuda_gpu.py::test_more_than_2_31_elements",
             "tests/test_cuda_gpu.py::test_never_reached"]
    assert gpu_check.pytest_selection(tmp_path, lambda: every) == every[1:2] + every[3:]
    gpu_check.record_step(tmp_path, "pytest", 1, 80.0, 115)  # finished: the failures alone
    assert gpu_check.pytest_selection(tmp_path, lambda: every) == every[1:2]
    assert gpu_check.pytest_selection(None, lambda: every) is None  # a first run: the whole suite


def test_a_missing_junit_file_is_reported() -> None:
    assert gpu_check.junit_failure_lines(Path("/nonexistent/junit.xml"))[0].startswith("pytest: no JUnit file")


def test_the_sanitizer_and_determinism_cases_name_real_losses() -> None:
    import lossk

    for loss, shape, _ in [*gpu_check.SANITIZER_CASES.values(), *gpu_check.DETERMINISM_FAMILIES.values()]:
        assert hasattr(lossk, loss) and all(n > 0 for n in shape)
    layouts = {name.split("-")[1] for name in gpu_check.SANITIZER_CASES if name.startswith("cross_entropy-")}
    assert {"thread_per_row", "streamed", "shared"} <= layouts
