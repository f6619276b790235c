"""Every CUDA source builds for sm_90 (H100) with nvcc, in every specialisation the host can ask for.

Each variant is built from exactly the text NVRTC receives at run time (``sources.kernel_source``: the
local headers inlined) and the ``-D`` flags of ``Specialisation.options()``, with warnings as errors, and
the cubin must export the kernels the host launches. The variants cover every value of every macro at
least once, every dtype with every layout, and the combinations the host uses on the common paths.
Skipped only where nvcc is absent (CI has it: nvcc 13.0). The same variants are also compiled with NVRTC
itself — the compiler CuPy uses at run time, which differs from nvcc (no host headers, no INFINITY) — where
libnvrtc is installed (the ``nvidia-cuda-nvrtc`` wheel, or ``$LOSSK_NVRTC`` naming the library); that
needs no GPU either. This proves the sources compile for sm_90; it does not prove they are right —
``tests/test_cuda_gpu.py`` does that on a GPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lossk import _dispatch
from lossk._backends.cupy import compiler, elementwise_losses, multi_input, sources, specialisation
from lossk._backends.cupy.specialisation import CrossEntropyLayout, OptionLayout, Specialisation
from lossk._backends.cupy.class_losses import with_hessian
from lossk._hessian import surrogate_key
from lossk._losses import ELEMENTWISE_LOSSES
from lossk._losses.multi_input import LOSSES as MULTI_INPUT_LOSSES

NVCC = shutil.which("nvcc")
FLOATS = ("float32", "float64", "float16", "bfloat16")
INDICES = ("int64", "int32", "int16", "int8", "uint8")

KERNELS = {
    "elementwise.cu": ("lossk_elementwise", "lossk_sum_partials", "lossk_finish", "lossk_finish_acc"),
    "cross_entropy.cu": ("lossk_cross_entropy", "lossk_cross_entropy_finish"),
    "multi_input.cu": ("lossk_multi_input", "lossk_multi_input_finish"),
    "nll_loss.cu": (
        "lossk_nll_rows", "lossk_nll_finish", "lossk_nll_grad", "lossk_class_divisor_partials",
        "lossk_class_divisor_finish",
    ),
}


def _elementwise(loss: str, dtype: str, **changes: object) -> Specialisation:
    options: dict[str, object] = {
        "weight": OptionLayout.NONE, "compute_grad": True, "reduce": True, "grad_output_array": False,
    }
    target = changes.pop("target", dtype)
    options.update(changes)
    return specialisation.elementwise(ELEMENTWISE_LOSSES[loss], dtype, target, **options)  # type: ignore[arg-type]


def _elementwise_variants(loss: str) -> list[Specialisation]:
    """One loss of the table: every dtype, the Hessian and its surrogate, each array option's layouts, each flag's
    values."""
    spec = ELEMENTWISE_LOSSES[loss]
    found = [_elementwise(loss, dtype) for dtype in FLOATS]
    found.append(_elementwise(loss, "float32", compute_hess=True, reduce=False, grad_output_array=True))
    # lossk.boosting's surrogate: with sample weights ('none', an upstream array) and, for a floor, without ('sum')
    found.append(_elementwise(loss, "float32", compute_hess=True, surrogate=True, reduce=False, grad_output_array=True))
    if spec.hessian_floor_element is not None:
        found.append(_elementwise(loss, "float64", compute_hess=True, surrogate=True))
    arrays = sum(1 for kind, _ in specialisation.element_options(spec) if kind == "array")
    for layout in (OptionLayout.FULL, OptionLayout.PERIODIC):
        if spec.weighted:
            found.append(_elementwise(loss, "float32", weight=layout))
        if arrays:
            found += [_elementwise(loss, d, weight=layout if spec.weighted else OptionLayout.NONE,
                                   options=(layout,) * arrays) for d in ("float32", "bfloat16")]
    for option in spec.formula_options:
        if option.kind == "flag":
            found += [_elementwise(loss, dtype, flags={option.name: not option.default}) for dtype in FLOATS]
    return found


MULTI_INPUT = {spec.name: spec for spec in MULTI_INPUT_LOSSES}


def _multi_input(loss: str, dtype: str, other: str | None = None, **changes: object) -> Specialisation:
    options: dict[str, object] = {"compute_grad": True, "reduce": True, "grad_output_array": False}
    options.update(changes)
    return specialisation.multi_input(MULTI_INPUT[loss], dtype, other or dtype, **options)  # type: ignore[arg-type]


def _multi_input_variants() -> list[Specialisation]:
    """The multi-input losses: each two-gradient loss in every dtype between them, the Hessian, 'none' with an
    upstream array, mixed dtypes and each flag's other value; the row-mean loss through elementwise.cu with
    class weights (periodic) and 'none'. Few variants: each costs an nvcc and an NVRTC compile in CI."""
    found = [
        _multi_input("gaussian_nll_loss", "float32"),
        _multi_input("gaussian_nll_loss", "float64"),
        _multi_input("gaussian_nll_loss", "float16", "float32", flags={"full": True}, compute_hess=True, reduce=False,
                     grad_output_array=True),
        _multi_input("margin_ranking_loss", "float32"),
        _multi_input("margin_ranking_loss", "bfloat16", compute_hess=True, reduce=False, grad_output_array=True),
        _multi_input("margin_ranking_loss", "float32", compute_grad=False),
    ]
    row_mean = MULTI_INPUT["multilabel_soft_margin_loss"]
    found += [
        specialisation.elementwise(row_mean, "float32", "float32", weight=OptionLayout.PERIODIC, compute_grad=True,
                                   reduce=True, grad_output_array=False),
        specialisation.elementwise(row_mean, "bfloat16", "bfloat16", weight=OptionLayout.NONE, compute_grad=True,
                                   compute_hess=True, reduce=False, grad_output_array=True),
    ]
    return found


def _cross_entropy(dtype: str, target: str = "int64", **changes: object) -> Specialisation:
    options: dict[str, object] = {
        "probability_target": False, "weight": False, "smoothing": False, "softcap": False, "z_loss": False,
        "return_z": False, "compute_grad": True, "reduce": True, "grad_output_array": False,
        "layout": CrossEntropyLayout.ROWS_STREAMED, "cluster": 1, "threads": 256,
    }
    options.update(changes)
    return specialisation.cross_entropy(dtype, target, **options)  # type: ignore[arg-type]


def variants() -> list[Specialisation]:
    found: list[Specialisation] = []
    # elementwise: every loss of the table that the CUDA template serves (test_cuda_host checks that is every
    # single-input loss), then the host's other paths on one loss each
    for loss in elementwise_losses.IMPLEMENTATIONS:
        found += _elementwise_variants(loss)
    found += [_elementwise("mse_loss", dtype, reduce=False, grad_output_array=True) for dtype in FLOATS]
    found += [_elementwise("mse_loss", "float16", compute_grad=False, compute_hess=True, reduce=False,
                           grad_output_array=True)]
    found += [_elementwise("l1_loss", "float16", compute_grad=False), _elementwise("l1_loss", "float16", reduce=False, compute_grad=False)]
    found += [_elementwise("smooth_l1_loss", "float16", target="float32"), _elementwise("mse_loss", "float32", target="float64")]
    found += [_elementwise("mse_loss", "bfloat16", target="float16", weight=OptionLayout.FULL, reduce=False)]
    found += [specialisation.weight_sums(acc) for acc in ("float32", "float64")]
    found += _multi_input_variants()
    # cross-entropy: every layout and cluster size in every dtype, then every option, target type and block size
    layouts = [(CrossEntropyLayout.ROWS_STREAMED, 1), (CrossEntropyLayout.THREAD_PER_ROW, 1)]
    layouts += [(CrossEntropyLayout.ROWS_SHARED, c) for c in (1, 2, 4, 8)]
    for layout, cluster in layouts:
        found += [_cross_entropy(d, layout=layout, cluster=cluster) for d in FLOATS]
        everything = {"weight": True, "smoothing": True, "softcap": True, "z_loss": True, "return_z": True}
        found += [_cross_entropy(d, layout=layout, cluster=cluster, **everything) for d in ("float32", "bfloat16")]
        found.append(_cross_entropy("float16", layout=layout, cluster=cluster, reduce=False, grad_output_array=True,
                                    z_loss=True, return_z=True))
        found.append(_cross_entropy("float32", layout=layout, cluster=cluster, compute_grad=False, reduce=False))
    for layout in (CrossEntropyLayout.ROWS_STREAMED, CrossEntropyLayout.THREAD_PER_ROW):
        found += [_cross_entropy(d, d, probability_target=True, layout=layout) for d in FLOATS]
        found.append(_cross_entropy("bfloat16", "float32", probability_target=True, layout=layout, weight=True,
                                    smoothing=True, softcap=True, z_loss=True, return_z=True, reduce=False,
                                    grad_output_array=True))
    # the Hessian's diagonal (LOSSK_HESS, cross_entropy.hessian) in every layout and cluster size, every option on
    everything = {"weight": True, "smoothing": True, "softcap": True, "z_loss": True, "return_z": True}
    for layout, cluster in layouts:
        found += [with_hessian(_cross_entropy("bfloat16", layout=layout, cluster=cluster, **everything)),
                  with_hessian(_cross_entropy("float32", layout=layout, cluster=cluster, reduce=False,
                                              grad_output_array=True, **everything))]
    for layout in (CrossEntropyLayout.ROWS_STREAMED, CrossEntropyLayout.THREAD_PER_ROW):
        found.append(with_hessian(_cross_entropy("float64", "float64", probability_target=True, layout=layout,
                                                 **everything)))
    found += [_cross_entropy("float32", index) for index in INDICES[1:]]
    found += [_cross_entropy("float32", threads=t) for t in (32, 64, 128, 512, 1024)]
    found += [_cross_entropy("bfloat16", layout=CrossEntropyLayout.ROWS_SHARED, cluster=8, threads=t) for t in (32, 128, 1024)]
    # nll: every dtype and index type, each option
    for dtype in FLOATS:
        found += [specialisation.nll_loss(dtype, "int64", weight=w, reduce=r, grad_output_array=not r)
                  for w in (False, True) for r in (False, True)]
    found += [specialisation.nll_loss("float32", index, weight=True, reduce=True, grad_output_array=False) for index in INDICES[1:]]
    found += [specialisation.class_divisors(index, acc, weight=w) for index in INDICES for acc in ("float32", "float64")
              for w in (False, True)]
    unique = list(dict.fromkeys(found))
    return unique


VARIANTS = variants()


def older_gpu_variants() -> list[tuple[str, Specialisation]]:
    """(architecture, variant) pairs for the GPUs before Hopper that the launch plan also serves: no clusters
    anywhere, bfloat16 only from sm_80 (launch.require_capability refuses it below)."""
    def cluster(v: Specialisation) -> int:
        return dict(v.defines).get("LOSSK_CLUSTER", 1)

    def uses_bfloat16(v: Specialisation) -> bool:
        return any(dict(v.defines).get(m) == specialisation.DTYPE_CODES["bfloat16"] for m in ("LOSSK_INPUT", "LOSSK_TARGET"))

    plain = [v for v in VARIANTS if cluster(v) == 1]
    chosen = [v for v in plain if v.source == "cross_entropy.cu"][::3] + [v for v in plain if v.source != "cross_entropy.cu"][::8]
    return [("sm_80", v) for v in chosen] + [("sm_75", v) for v in chosen if not uses_bfloat16(v)]


OLDER_GPU_VARIANTS = older_gpu_variants()


def test_the_variants_cover_every_source() -> None:
    assert {v.source for v in VARIANTS} == set(sources.cuda_sources()) == set(KERNELS)


def test_every_elementwise_loss_served_on_the_gpu_has_its_surrogate_compiled() -> None:
    compiled = {(dict(v.defines).get("LOSSK_ELEMENT"), dict(v.defines).get("LOSSK_HESSIAN_FLOOR"))
                for v in VARIANTS if dict(v.defines).get("LOSSK_SURROGATE")}
    expected = {(ELEMENTWISE_LOSSES[name].cuda_function, specialisation.hessian_floor_function(ELEMENTWISE_LOSSES[name]))
                for name in elementwise_losses.IMPLEMENTATIONS}
    assert expected <= compiled
    # every loss served registers the fused surrogate (lossk.boosting then needs no pass of its own)
    assert all((surrogate_key(name), "cupy") in _dispatch._REGISTRY for name in elementwise_losses.IMPLEMENTATIONS)


def test_every_multi_input_loss_served_on_the_gpu_is_compiled() -> None:
    compiled = {dict(v.defines).get("LOSSK_ELEMENT") for v in VARIANTS}
    assert {MULTI_INPUT[name].cuda_function for name in multi_input.IMPLEMENTATIONS} <= compiled
    assert set(multi_input.IMPLEMENTATIONS) == set(MULTI_INPUT)  # every multi-input loss has a CUDA kernel


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed here")
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.source + ":" + ",".join(f"{k[6:]}={x}" for k, x in v.defines))
def test_variant_builds_for_sm90(variant: Specialisation, tmp_path: Path) -> None:
    source = tmp_path / variant.source
    source.write_text(sources.kernel_source(variant.source), encoding="utf-8")
    cubin = tmp_path / "kernel.cubin"
    command = [
        NVCC, "-arch=sm_90", "-cubin", *compiler.NVRTC_OPTIONS, "-Werror", "all-warnings", *variant.options(),
        "-o", str(cubin), str(source),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    binary = cubin.read_bytes()
    for kernel in KERNELS[variant.source]:
        assert kernel.encode() in binary, f"{kernel} missing from the cubin"


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed here")
@pytest.mark.parametrize(("arch", "variant"), OLDER_GPU_VARIANTS,
                         ids=lambda v: v if isinstance(v, str) else v.source + ":" + ",".join(f"{k[6:]}={x}" for k, x in v.defines))
def test_variant_builds_for_older_gpus(arch: str, variant: Specialisation, tmp_path: Path) -> None:
    source = tmp_path / variant.source
    source.write_text(sources.kernel_source(variant.source), encoding="utf-8")
    command = [NVCC, f"-arch={arch}", "-cubin", *compiler.NVRTC_OPTIONS, "-Werror", "all-warnings", *variant.options(),
               "-o", str(tmp_path / "kernel.cubin"), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"


@functools.cache
def nvrtc() -> ctypes.CDLL | None:
    """libnvrtc, from $LOSSK_NVRTC, the nvidia-cuda-nvrtc wheel or the system; None where there is none."""
    candidates = [os.environ.get("LOSSK_NVRTC", "")]
    spec = importlib.util.find_spec("nvidia")
    for root in spec.submodule_search_locations if spec and spec.submodule_search_locations else []:
        candidates += sorted(str(p) for p in Path(root).glob("*/lib/libnvrtc.so*") if "builtins" not in p.name)
    candidates.append(ctypes.util.find_library("nvrtc") or "")
    for candidate in filter(None, candidates):
        try:
            for builtins in sorted(Path(candidate).parent.glob("libnvrtc-builtins.so*")):
                ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)  # NVRTC opens it by name later
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.source + ":" + ",".join(f"{k[6:]}={x}" for k, x in v.defines))
def test_variant_builds_with_nvrtc_for_sm90(variant: Specialisation) -> None:
    library = nvrtc()
    if library is None:
        pytest.skip("libnvrtc is not installed here (pip install nvidia-cuda-nvrtc, or set LOSSK_NVRTC)")
    program = ctypes.c_void_p()
    code = sources.kernel_source(variant.source).encode()
    assert library.nvrtcCreateProgram(ctypes.byref(program), code, variant.source.encode(), 0, None, None) == 0
    options = [o.encode() for o in ("-arch=sm_90", *compiler.NVRTC_OPTIONS, *variant.options())]
    status = library.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    library.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    library.nvrtcGetProgramLog(program, log)
    library.nvrtcDestroyProgram(ctypes.byref(program))
    assert status == 0 and not log.value.strip(), log.value.decode(errors="replace")
