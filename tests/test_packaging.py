"""``kernels/`` is ``lossk._kernels`` in every way of running lossk: wheel, editable install, source tree.

The wheel copies ``kernels/`` to ``lossk/_kernels/``; an editable install and a checkout imported from its root
(``lossk/_source_tree.py``) map the checkout's own ``kernels/``. Each way is checked the same way, in a fresh
interpreter: every file reached through ``lossk._kernels`` (the Numba modules as imported, the CUDA sources as
``importlib.resources`` lists them) has the content of this checkout's ``kernels/``, and lives where that way
of running puts it.

Everything runs on a copy of the project in a temporary directory (no build artefacts in the tree); builds use
pip's isolated build environment (setuptools and wheel from the package index). The interpreters run with
``-S`` and an explicit ``sys.path`` (the test environment's site-packages without its ``.pth`` files), so that
the editable install of the environment running the tests cannot answer for ``lossk``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "lossk", "kernels"]
KERNEL_SUFFIXES = (".py", ".cu", ".cuh")
SITE_PACKAGES = sorted({str(Path(__import__(m).__file__).parents[1]) for m in ("numpy", "array_api_compat")})

pytestmark = pytest.mark.slow

# Run in the interpreter under test: every kernel file reached through lossk._kernels, by path, and where
# lossk itself came from. The Numba modules are imported (if Numba is here), so their __file__ is what runs.
PROBE = """
import importlib, importlib.resources, importlib.util, json, pkgutil, sys
import lossk, lossk._kernels
files = {}
def walk(node, prefix):
    for child in node.iterdir():
        if child.is_dir():
            if child.name != "__pycache__":
                walk(child, prefix + child.name + "/")
        elif child.name.endswith(%(suffixes)r):
            files[prefix + child.name] = str(child)
walk(importlib.resources.files("lossk._kernels"), "")
modules = {}
if importlib.util.find_spec("numba") is not None:
    import lossk._kernels.numba as package
    for info in pkgutil.walk_packages(package.__path__, "lossk._kernels.numba."):
        module = importlib.import_module(info.name)
        modules[module.__name__] = module.__file__
print(json.dumps({"lossk": lossk.__file__, "files": files, "modules": modules}))
""" % {"suffixes": KERNEL_SUFFIXES}


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


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checkout_kernels() -> dict[str, str]:
    """This checkout's kernel files, by path under ``kernels/``, with their digests."""
    kernels = ROOT / "kernels"
    return {
        p.relative_to(kernels).as_posix(): digest(p)
        for p in kernels.rglob("*")
        if p.suffix in KERNEL_SUFFIXES and "__pycache__" not in p.parts
    }


def probe_output(code: str, path: list[str], cwd: Path, prelude: str = "") -> str:
    """The last line ``code`` prints in a fresh interpreter run in ``cwd``: ``prelude`` runs first, then ``path``
    is appended to ``sys.path`` (the standard library only, under ``-S``)."""
    script = f"{prelude}\nimport sys; sys.path.extend({path!r})\n{code}"
    result = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def probe_kernels(path: list[str], cwd: Path, prelude: str = "") -> dict:
    """Where lossk and the files of ``lossk._kernels`` come from, in a fresh interpreter (see ``PROBE``)."""
    return json.loads(probe_output(PROBE, path, cwd, prelude))


def assert_same_kernels(seen: dict, location: Path) -> None:
    """Every kernel file of this checkout, with the same content, and all of them under ``location``."""
    assert {name: digest(path) for name, path in seen["files"].items()} == checkout_kernels()
    for path in [*seen["files"].values(), *seen["modules"].values()]:
        assert Path(path).is_relative_to(location), f"{path} is not under {location}"
    expected_modules = {
        "lossk._kernels." + name.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        for name in checkout_kernels()
        if name.startswith("numba/") and name.endswith(".py") and name != "numba/__init__.py"
    }
    if "numba" in sys.modules:  # the interpreter under test has the same packages
        assert set(seen["modules"]) == expected_modules
        for module, path in seen["modules"].items():
            assert path in seen["files"].values(), f"{module} runs {path}, not a file of lossk._kernels"


def pip(*args: str) -> None:
    # build isolation: the build backend pyproject.toml asks for, not whatever setuptools the test venv has
    command = [sys.executable, "-m", "pip", *args, "--no-deps", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"


def test_pyproject_lists_every_package():
    """setuptools installs only the packages ``pyproject.toml`` lists (``kernels/`` is remapped, so it cannot
    discover them): a package folder missing from the list would be missing from the wheel."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"lossk": ROOT / "lossk", **{name: ROOT / path for name, path in config["package-dir"].items()}}
    on_disk = set()
    for package, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder)
            if "__pycache__" not in relative.parts:
                on_disk.add(".".join([package, *relative.parts]))
    listed = set(config["packages"])
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "these packages of pyproject.toml have no folder"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def wheel(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    pip("wheel", str(project), "-w", str(dist))
    (built,) = dist.glob("lossk-*.whl")
    return built


def test_wheel_contains_the_kernels(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ["lossk/_kernels/__init__.py", "lossk/_kernels/numba/__init__.py", "lossk/_kernels/cuda/__init__.py",
                   "lossk/py.typed", "lossk/_reference/__init__.py", "lossk/_backends/numba/__init__.py"]:
        assert module in names, f"{module} is missing from {wheel.name}"
    for name in checkout_kernels():
        assert "lossk/_kernels/" + name in names, f"lossk/_kernels/{name} is missing from {wheel.name}"
    assert any(name.startswith("lossk/_kernels/cuda/") and name.endswith(".cu") for name in names), "no CUDA source"
    assert not any(name.startswith("kernels/") for name in names), "kernels/ must be installed as lossk/_kernels"
    assert "lossk/_source_tree.py" in names


def test_wheel_runs_its_own_copy_of_the_kernels(wheel, project, tmp_path):
    target = tmp_path / "site"
    pip("install", "--target", str(target), str(wheel))
    # cwd: a folder without lossk/, so the installed lossk is imported
    seen = probe_kernels([str(target), *SITE_PACKAGES], cwd=tmp_path)
    assert Path(seen["lossk"]).is_relative_to(target)
    assert_same_kernels(seen, target / "lossk" / "_kernels")


def test_wheel_shadowed_by_the_checkout_runs_the_checkouts_kernels(wheel, project, tmp_path):
    """README's first command: the wheel installed, then ``python -m bench`` from the clone's root."""
    target = tmp_path / "site"
    pip("install", "--target", str(target), str(wheel))
    seen = probe_kernels([str(target), *SITE_PACKAGES], cwd=project)
    assert Path(seen["lossk"]).is_relative_to(project / "lossk")
    assert_same_kernels(seen, project / "kernels")


def test_source_tree_runs_the_checkouts_kernels(project):
    """No install at all: ``import lossk`` from the checkout's root."""
    seen = probe_kernels(SITE_PACKAGES, cwd=project)
    assert Path(seen["lossk"]).is_relative_to(project / "lossk")
    assert_same_kernels(seen, project / "kernels")


def test_editable_install_runs_the_checkouts_kernels(project, tmp_path):
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip would first uninstall the lossk of the environment running the tests
    pip("install", "--prefix", str(prefix), "--ignore-installed", "-e", str(project))
    purelib = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    # site.addsitedir runs the editable install's .pth (its import hook), before the test environment's
    # site-packages, whose own editable hook (this checkout's) has the same module name; cwd: not the project
    seen = probe_kernels(SITE_PACKAGES, cwd=tmp_path, prelude=f"import site; site.addsitedir({purelib!r})")
    assert Path(seen["lossk"]).is_relative_to(project / "lossk")
    assert_same_kernels(seen, project / "kernels")


CACHE_PROBE = """
import numpy as np, lossk
from numba.core.registry import CPUDispatcher
import lossk._kernels.numba as package, pkgutil, importlib
x = np.linspace(-1, 1, 1 << 17, dtype=np.float32)
lossk.mse_loss.value_and_grad(x, np.zeros_like(x), backend="numba")
hits = misses = 0
for info in pkgutil.walk_packages(package.__path__, "lossk._kernels.numba."):
    module = importlib.import_module(info.name)
    for value in vars(module).values():
        if isinstance(value, CPUDispatcher):
            hits += sum(value.stats.cache_hits.values())
            misses += sum(value.stats.cache_misses.values())
print(hits, misses)
"""


def test_numba_caches_the_source_trees_kernels(project):
    """``cache=True`` works for the mapped ``kernels/``: a second process loads what the first compiled."""
    pytest.importorskip("numba")
    first = probe_output(CACHE_PROBE, SITE_PACKAGES, cwd=project)
    hits, misses = map(int, first.split())
    assert misses > 0 and hits == 0, "the first process found a cache: the copy of the project is not fresh"
    assert any((project / "kernels" / "numba" / "__pycache__").glob("*.nbi")), "no Numba cache index beside the kernels"
    hits, misses = map(int, probe_output(CACHE_PROBE, SITE_PACKAGES, cwd=project).split())
    assert hits > 0 and misses == 0, f"second process: {hits} cache hits, {misses} misses"


def test_compile_command_fills_the_cache(tmp_path):
    """``python -m lossk.compile`` compiles ahead of time: a later process loads every kernel it calls from the cache."""
    pytest.importorskip("numba")
    project = copy_project(tmp_path)
    command = [sys.executable, "-m", "lossk.compile", "mse_loss", "--jobs", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "mse_loss" in result.stdout and "compiled 1 losses" in result.stdout, result.stdout
    assert any((project / "kernels" / "numba" / "pointwise" / "__pycache__").glob("mse_loss*.nbi"))
    hits, misses = map(int, probe_output(CACHE_PROBE, SITE_PACKAGES, cwd=project).split())
    assert hits > 0 and misses == 0, f"after lossk.compile: {hits} cache hits, {misses} misses"
