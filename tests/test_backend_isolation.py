"""A broken optional backend never breaks the reference: each failure simulated in a fresh interpreter.

Each scenario prepares ``sys.modules`` or ``sys.meta_path`` before ``import lossk`` (a library that is not
installed, one whose import raises, CuPy without a device), then runs every loss of the dispatch registry with
``backend="auto"`` and records what it computed and which warnings it saw. The test checks that the broken
backend is left out, with one warning naming it and the original error (none where it is simply not
installed), that asking for it by name raises ``BackendUnavailableError`` chained to that error, and that every
loss computed exactly what this (healthy) process computes without the broken backend.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lossk
from lossk import _dispatch

from registry_inputs import every_loss_inputs, public_losses

ROOT = Path(__file__).resolve().parents[1]
LLVMLITE_ERROR = "OSError: libllvmlite.so: cannot open shared object file (simulated)"
CUDA_ERROR = "cudaErrorNoDevice: no CUDA-capable device is detected (simulated)"

SCENARIOS = {
    # not installed: find_spec answers None, the import raises ModuleNotFoundError
    "numba is not installed": "sys.modules['numba'] = None",
    # installed, but its import raises: llvmlite's shared library does not load
    "llvmlite does not load": f"""
import importlib.abc
class BrokenLlvmlite(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "llvmlite.binding.ffi":
            raise OSError({LLVMLITE_ERROR.removeprefix("OSError: ")!r})
        return None
sys.meta_path.insert(0, BrokenLlvmlite())
""",
    # installed, and imports, but its device probe fails: no CUDA device (CuPy's error type, simplified)
    "cupy without a device": f"""
import importlib.machinery, types
cupy = types.ModuleType("cupy")
cupy.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
class ndarray: pass
class CUDARuntimeError(RuntimeError): pass
def getDeviceCount():
    raise CUDARuntimeError({CUDA_ERROR!r})
cupy.ndarray = ndarray
cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=getDeviceCount))
sys.modules["cupy"] = cupy
""",
}
BROKEN = {"numba is not installed": "numba", "llvmlite does not load": "numba", "cupy without a device": "cupy"}
CAUSE = {
    "numba is not installed": "ModuleNotFoundError: No module named 'numba'",
    "llvmlite does not load": LLVMLITE_ERROR,
    "cupy without a device": f"CUDARuntimeError: {CUDA_ERROR}",
}
WARNS = {"numba is not installed": False, "llvmlite does not load": True, "cupy without a device": True}
# A scenario that breaks an installed library needs it installed (CI runs the suite once without Numba).
NEEDS = {"llvmlite does not load": "numba"}
NUMBA_INSTALLED = importlib.util.find_spec("numba") is not None

RUN = """
import json, sys, warnings
import numpy as np
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import lossk
    from lossk import _dispatch
    inputs = np.load(sys.argv[1], allow_pickle=True).item()
    computed, chosen = {}, {}
    for round in range(2):  # twice: the warning is once per process, not once per call
        for loss, (arrays, options) in inputs.items():
            computed[loss] = [np.asarray(v) for v in getattr(lossk, loss).value_and_grad(*arrays, **options)]
            chosen[loss] = sorted(_dispatch.implementations(loss))
    try:
        lossk.mse_loss(np.ones(3), np.ones(3), backend=sys.argv[2])
        error = None
    except lossk.BackendUnavailableError as e:
        cause = e.__cause__
        error = {"message": str(e), "cause": None if cause is None else f"{type(cause).__name__}: {cause}"}
np.save(sys.argv[3], computed, allow_pickle=True)
warned = [f"{w.category.__name__}: {w.message}" for w in caught]
print(json.dumps({"chosen": chosen, "error": error, "warnings": warned}))
"""


def first_case_inputs(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """One non-empty configuration of every public loss of the registry."""
    inputs = {}
    for entry in every_loss_inputs():
        if entry.loss not in inputs and not entry.empty:
            inputs[entry.loss] = entry.make(rng)
    assert set(inputs) == set(public_losses()), "a loss has only empty configurations"
    return inputs


def test_the_registry_has_the_public_losses():
    """The scenarios iterate over the registry: it must hold every public loss function."""
    public = {name for name in lossk.__all__ if isinstance(getattr(lossk, name), lossk.LossFunction)}
    assert public <= set(public_losses()) | {"linear_cross_entropy"}  # which dispatches cross_entropy
    assert len(public_losses()) >= 9


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_broken_backend_leaves_the_reference_working(scenario, tmp_path, rng, seed):
    needed = NEEDS.get(scenario)
    if needed is not None and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{scenario!r} breaks an installed {needed}, and {needed} is not installed here")
    inputs = first_case_inputs(rng)
    np.save(tmp_path / "inputs.npy", inputs, allow_pickle=True)
    broken = BROKEN[scenario]
    script = f"import sys\n{SCENARIOS[scenario]}\n{RUN}"
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "inputs.npy"), broken, str(tmp_path / "computed.npy")],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])

    # auto: the broken backend is left out, with one warning naming it and the cause (none if not installed)
    for loss, backends in report["chosen"].items():
        assert broken not in backends and "array_api" in backends, loss
    expected_warnings = (
        [f"BackendUnavailableWarning: lossk backend {broken!r} is installed but unavailable ({CAUSE[scenario]}); "
         'backend="auto" uses the other backends']
        if WARNS[scenario] else []
    )
    assert report["warnings"] == expected_warnings

    # by name: BackendUnavailableError chained to the cause, saying how to install the backend
    assert report["error"] is not None, f"backend={broken!r} did not raise"
    assert report["error"]["cause"] == CAUSE[scenario]
    assert CAUSE[scenario] in report["error"]["message"]
    assert _dispatch.BACKENDS[broken].install_hint in report["error"]["message"]

    # every loss computed what this healthy process computes: on the reference where numba is broken; with
    # auto where cupy is (NumPy inputs: cupy is never auto's choice for them, numba or the reference is)
    computed = np.load(tmp_path / "computed.npy", allow_pickle=True).item()
    assert set(computed) == set(inputs)
    healthy = "array_api" if broken == "numba" else "auto"
    for loss, (arrays, options) in inputs.items():
        expected = getattr(lossk, loss).value_and_grad(*arrays, backend=healthy, **options)
        for got, want, what in zip(computed[loss], expected, ("loss", "gradient")):
            np.testing.assert_array_equal(got, np.asarray(want), err_msg=f"{loss} {what}, LOSSK_SEED={seed}")


@pytest.mark.skipif(not NUMBA_INSTALLED, reason="the probe that fails is that of an installed numba")
def test_in_process_failure_is_chained_and_warned_once(monkeypatch):
    """A device probe that raises: by name, the error is chained; auto warns once, at the caller of lossk."""
    error = OSError("simulated driver failure")

    def probe() -> None:
        raise error

    monkeypatch.setitem(_dispatch.BACKENDS, "numba", dataclasses.replace(_dispatch.BACKENDS["numba"], probe=probe))
    monkeypatch.setattr(_dispatch, "_warned", set())
    _dispatch.status.cache_clear()
    try:
        with pytest.raises(lossk.BackendUnavailableError, match="simulated driver failure") as raised:
            lossk.mse_loss(np.ones(3), np.zeros(3), backend="numba")
        assert raised.value.__cause__ is error
        with pytest.warns(lossk.BackendUnavailableWarning, match="'numba'.*OSError: simulated driver failure") as w:
            assert float(lossk.mse_loss(np.ones(3), np.zeros(3))) == 1.0
            assert float(lossk.l1_loss(np.ones(3), np.zeros(3))) == 1.0
        assert len(w) == 1
        assert w[0].filename == __file__, "the warning points at the caller of lossk"
    finally:
        monkeypatch.undo()
        _dispatch.status.cache_clear()
