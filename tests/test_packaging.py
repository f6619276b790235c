"""``kernels/`` ships as ``lossk._kernels``: in the built wheel, and through an editable install.

Both builds run on a copy of the project in a temporary directory (no build artefacts in the tree), in
pip's isolated build environment (setuptools and wheel from the package index).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "lossk", "kernels"]

pytestmark = pytest.mark.slow


def copy_project(destination: Path) -> Path:
    project = destination / "lossk-project"
    project.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, project / name)
    return project


def pip(*args: str) -> None:
    # build isolation: the build backend pyproject.toml asks for, not whatever setuptools the test venv has
    command = [sys.executable, "-m", "pip", *args, "--no-deps", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"


def test_wheel_contains_the_kernels(tmp_path):
    project = copy_project(tmp_path)
    pip("wheel", str(project), "-w", str(tmp_path / "dist"))
    (wheel,) = (tmp_path / "dist").glob("lossk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ["lossk/_kernels/__init__.py", "lossk/_kernels/numba/__init__.py", "lossk/_kernels/cuda/__init__.py",
                   "lossk/py.typed", "lossk/_reference/__init__.py", "lossk/_backends/numba/__init__.py"]:
        assert module in names, f"{module} is missing from {wheel.name}"
    for source in [*(ROOT / "kernels").rglob("*.py"), *(ROOT / "kernels").rglob("*.cu"), *(ROOT / "kernels").rglob("*.cuh")]:
        name = "lossk/_kernels/" + source.relative_to(ROOT / "kernels").as_posix()
        assert name in names, f"{name} is missing from {wheel.name}"
    assert any(name.startswith("lossk/_kernels/cuda/") and name.endswith(".cu") for name in names), "no CUDA source"
    assert not any(name.startswith("kernels/") for name in names), "kernels/ must be installed as lossk/_kernels"


def test_editable_install_sees_the_kernels(tmp_path):
    project = copy_project(tmp_path)
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip would first uninstall the lossk of the environment running the tests
    pip("install", "--prefix", str(prefix), "--ignore-installed", "-e", str(project))
    purelib = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    dependencies = {str(Path(__import__(m).__file__).parents[1]) for m in ("numpy", "array_api_compat")}
    # -S: no site-packages but the editable install's (whose .pth wires it up) and lossk's dependencies
    probe = f"""
import site, sys
site.addsitedir({purelib!r})
sys.path.extend({sorted(dependencies)!r})
import importlib.resources, lossk, lossk._kernels.numba
assert lossk.__file__.startswith({str(project)!r}), lossk.__file__
kernels = importlib.resources.files("lossk._kernels")
print(sorted(p.name for p in kernels.joinpath("numba").iterdir()))
print(sorted(p.name for p in kernels.joinpath("cuda").iterdir()))
"""
    # cwd: not the project root, whose lossk/ python -c would import first
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    numba_files, cuda_files = (eval(line) for line in result.stdout.splitlines())  # noqa: S307 - our own output
    assert "__init__.py" in numba_files
    assert "__init__.py" in cuda_files
    expected_cu = sorted(p.name for p in (ROOT / "kernels" / "cuda").glob("*.cu"))
    assert [name for name in cuda_files if name.endswith(".cu")] == expected_cu
