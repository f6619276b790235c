"""Who computes the losses: lossk's backends and the peers a user would pick instead.

A :class:`Provider` turns a case's host arrays into a *call*: a function of no arguments that runs one
forward+backward on the provider's own arrays and returns ``(loss, grad)`` once the work is finished (the
device synchronised). Providers whose library is missing, that do not run on the chosen device, or that
do not implement a loss, say why; the benchmark lists them as skipped.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .cases import Case

Call = Callable[[], tuple[Any, Any]]
CPU, GPU = "cpu", "gpu"


class NotApplicable(Exception):
    """This provider does not compute this loss (on this device); the message says why."""


class Provider(ABC):
    """One way to compute a loss's value and gradient."""

    name: str
    peer: bool
    """True for the libraries lossk is compared with; False for lossk's own backends."""
    devices: frozenset[str]
    libraries: tuple[str, ...]
    """Modules that must import for this provider to run."""
    description: str
    """What exactly is timed, in a few words."""

    def unavailable(self, device: str) -> str | None:
        """Why this provider cannot run on ``device`` here, or None if it can."""
        if device not in self.devices:
            return f"runs on {' and '.join(sorted(self.devices)).upper()} only"
        for module in self.libraries:
            try:
                importlib.import_module(module)
            except ImportError:
                return f"{module} is not installed"
            except Exception as error:  # noqa: BLE001 - a broken install is reported, not raised
                return f"{module} fails to import: {type(error).__name__}: {error}"
        return None

    def not_by_default(self, device: str) -> str | None:
        """Why a run that names no providers leaves this one out on ``device``, or None if it includes it."""
        return None

    @abstractmethod
    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        """Move ``arrays`` to this provider and return its forward+backward call; raise NotApplicable."""


# --- arrays on devices ------------------------------------------------------------------------------


def _synchronize_cupy() -> None:
    import cupy

    cupy.cuda.Device().synchronize()


def _synchronize_torch_cuda() -> None:
    import torch

    torch.cuda.synchronize()


def _nothing() -> None:
    return None


def _gpu_arrays(arrays: tuple[np.ndarray, ...]) -> tuple[tuple[Any, ...], Callable[[], None]]:
    """Host arrays as CuPy arrays (or PyTorch CUDA tensors without CuPy), and how to wait for the GPU."""
    try:
        import cupy
    except ImportError:
        import torch

        return tuple(torch.from_numpy(a).cuda() for a in arrays), _synchronize_torch_cuda
    return tuple(cupy.asarray(a) for a in arrays), _synchronize_cupy


def to_numpy(x: Any) -> np.ndarray:
    """A result of any provider as a NumPy array (copied to the host)."""
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


# --- lossk --------------------------------------------------------------------------------------------


class LosskBackend(Provider):
    """``lossk.<loss>.value_and_grad(..., backend=<backend>)``."""

    peer = False
    libraries = ("lossk",)

    def __init__(self, backend: str, devices: frozenset[str]) -> None:
        self.backend = backend
        self.name = f"lossk.{backend}"
        self.devices = devices
        self.description = (
            f"lossk value_and_grad, backend={backend!r}; the gradient goes into a reused out= buffer "
            "where the backend writes it directly"
        )

    def unavailable(self, device: str) -> str | None:
        reason = super().unavailable(device)
        if reason is not None:
            return reason
        from lossk import _dispatch

        try:
            available = _dispatch.is_available(self.backend)
        except Exception as error:  # noqa: BLE001 - a backend that fails to load is reported, not raised
            return f"fails to load: {type(error).__name__}: {error}"
        if not available:
            return f"not available here; install with: {_dispatch.BACKENDS[self.backend].install_hint}"
        return None

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        import lossk
        from lossk import _dispatch

        registration = _dispatch.implementations(case.lossk_dispatch or case.lossk_name).get(self.backend)
        if registration is None or not hasattr(lossk, case.lossk_name):
            raise NotApplicable(f"lossk's {self.backend} backend does not implement this loss")
        args, synchronize = (arrays, _nothing) if device == CPU else _gpu_arrays(arrays)
        value_and_grad = functools.partial(
            getattr(lossk, case.lossk_name).value_and_grad, backend=self.backend, **case.options
        )
        if registration.writes_out and "out" in inspect.signature(value_and_grad.func).parameters:
            value_and_grad = functools.partial(value_and_grad, out=_buffers(args, case.differentiable))

        def call() -> tuple[Any, Any]:
            loss, grad = value_and_grad(*args)
            synchronize()
            return loss, _differentiated(grad, case)

        return call


def _differentiated(grad: Any, case: Case) -> Any:
    """lossk's gradient of ``case``'s differentiated arguments: linear_cross_entropy also returns
    ``d_linear_bias`` (None here), which is dropped."""
    return grad[: len(case.differentiable)] if len(case.differentiable) > 1 else grad


def _buffers(args: tuple[Any, ...], differentiable: tuple[int, ...]) -> Any:
    """An ``out=`` for lossk: an array like the differentiated argument, or a tuple of one per argument."""
    from array_api_compat import array_namespace

    buffers = tuple(array_namespace(args[i]).empty_like(args[i]) for i in differentiable)
    return buffers if len(buffers) > 1 else buffers[0]


class LosskHessian(LosskBackend):
    """``lossk.<loss>.value_grad_hessian(..., backend=<backend>)``: the Hessian's diagonal in the same pass."""

    def __init__(self, backend: str, devices: frozenset[str]) -> None:
        super().__init__(backend, devices)
        self.name = f"lossk.{backend}.hessian"
        self.description = (
            f"lossk value_grad_hessian (loss, gradient and the Hessian's diagonal), backend={backend!r}; "
            "gradient and Hessian into reused out=/hess_out= buffers"
        )

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        import lossk
        from lossk import _dispatch
        from lossk._hessian import key

        function = getattr(lossk, case.lossk_name, None)
        registration = _dispatch.implementations(key(case.lossk_dispatch or case.lossk_name)).get(self.backend)
        if registration is None or not hasattr(function, "value_grad_hessian"):
            raise NotApplicable(f"lossk's {self.backend} backend has no Hessian of this loss")
        args, synchronize = (arrays, _nothing) if device == CPU else _gpu_arrays(arrays)
        buffers = {}
        if registration.writes_out and "out" in inspect.signature(function.value_grad_hessian).parameters:
            buffers = {"out": _buffers(args, case.differentiable), "hess_out": _buffers(args, case.differentiable)}
        value_grad_hessian = functools.partial(
            function.value_grad_hessian, backend=self.backend, **buffers, **case.options
        )

        def call() -> tuple[Any, Any]:
            loss, grad, _ = value_grad_hessian(*args)
            synchronize()
            return loss, _differentiated(grad, case)

        return call


class LosskTorch(Provider):
    """``lossk.torch.<loss>`` (a torch.library custom op) forward, then ``loss.backward()``."""

    name = "lossk.torch"
    peer = False
    libraries = ("torch", "lossk.torch")
    devices = frozenset({CPU, GPU})
    description = "lossk.torch drop-in: fused forward keeps the gradient, autograd backward scales it"

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        import lossk.torch

        loss_function = getattr(lossk.torch, case.lossk_name, None)
        if loss_function is None:
            raise NotApplicable("lossk.torch does not wrap this loss")
        return _torch_autograd_call(case, functools.partial(loss_function, **case.options), arrays, device)


class LosskJax(Provider):
    """``jax.jit(jax.value_and_grad(lossk.jax.<loss>))``."""

    name = "lossk.jax"
    peer = False
    libraries = ("jax", "lossk.jax")
    devices = frozenset({CPU})
    description = "lossk.jax custom_vjp under jax.jit(jax.value_and_grad) (CPU: the Numba kernels via a callback)"

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        import jax

        import lossk.jax

        loss_function = getattr(lossk.jax, case.lossk_name, None)
        if loss_function is None:
            raise NotApplicable("lossk.jax does not wrap this loss")
        args = tuple(jax.device_put(a.astype(np.int32) if a.dtype == np.int64 else a, jax.devices(CPU)[0])
                     for a in arrays)
        argnums = case.differentiable if len(case.differentiable) > 1 else case.differentiable[0]
        value_and_grad = jax.jit(jax.value_and_grad(functools.partial(loss_function, **case.options), argnums=argnums))

        def call() -> tuple[Any, Any]:
            return jax.block_until_ready(value_and_grad(*args))

        return call


# --- several-pass array code: NumPy on the CPU, CuPy on a GPU -------------------------------------------


class SeveralPass(Provider):
    """The obvious forward and backward, one NumPy (or CuPy) operation at a time."""

    peer = True

    def __init__(self, module: str, device: str) -> None:
        self.name = module
        self.libraries = (module,)
        self.devices = frozenset({device})
        self.description = f"hand-written {module} forward and backward, one array operation per step"

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        xp = importlib.import_module(self.name)
        args = tuple(xp.asarray(a) for a in arrays)
        synchronize = _synchronize_cupy if device == GPU else _nothing
        several_pass = functools.partial(case.several_pass, xp, **case.options)

        def call() -> tuple[Any, Any]:
            result = several_pass(*args)
            synchronize()
            return result

        return call


# --- PyTorch ------------------------------------------------------------------------------------------


def _torch_autograd_call(
    case: Case, loss_function: Callable[..., Any], arrays: tuple[np.ndarray, ...], device: str
) -> Call:
    """Tensors on ``device`` (the differentiable ones requiring grad); ``loss_function`` then ``backward()``."""
    import torch

    tensors = [torch.from_numpy(a).to("cuda" if device == GPU else "cpu") for a in arrays]
    leaves = [tensors[i].requires_grad_(True) for i in case.differentiable]
    synchronize = _synchronize_torch_cuda if device == GPU else _nothing

    def call() -> tuple[Any, Any]:
        for leaf in leaves:
            leaf.grad = None
        loss = loss_function(*tensors)
        loss.backward()
        synchronize()
        grads = tuple(leaf.grad for leaf in leaves)
        return loss.detach(), grads if len(grads) > 1 else grads[0]

    return call


INDUCTOR_ON_CPU = (
    "Inductor's C++ code generation takes about 30 s for the first loss on a 2-core CPU (measured), "
    "more than the whole --quick run; name it in --providers to include it"
)
"""Why the torch.compile providers run on a CPU only when named (on a GPU, Inductor compiles Triton kernels in
seconds)."""


def _torch_compile(function: Callable[..., Any], backend: str) -> Callable[..., Any]:
    """``torch.compile(function, dynamic=False)``: one compilation per shape, more shapes allowed than Dynamo's
    default limit of 8."""
    import torch

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(function, dynamic=False, backend=backend)


class TorchAutograd(Provider):
    """``torch.nn.functional.<loss>`` then ``loss.backward()``: eager, under ``torch.compile``, or chunked."""

    peer = True
    libraries = ("torch",)
    devices = frozenset({CPU, GPU})
    VARIANTS: ClassVar[dict[str, str]] = {
        "torch": "eager F.<loss>",
        "torch.compile": "torch.compile(F.<loss>, dynamic=False)",
        "torch.chunked": "F.<loss> with its chunked path (linear_cross_entropy: options=LinearCrossEntropyOptions())",
    }

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"PyTorch {self.VARIANTS[name]} forward, autograd backward; gradients allocated each call"

    def not_by_default(self, device: str) -> str | None:
        return INDUCTOR_ON_CPU if self.name == "torch.compile" and device == CPU else None

    def loss_function(self, case: Case, compile_backend: str = "inductor") -> Callable[..., Any]:
        """``F.<loss>`` with the case's options (compiled, or with the chunked path's options), taking tensors;
        raises NotApplicable."""
        import torch

        loss_function = getattr(torch.nn.functional, case.torch_name or "", None)
        if loss_function is None:
            raise NotApplicable("PyTorch has no such loss")
        options = dict(case.options)
        if self.name == "torch.compile":
            loss_function = _torch_compile(loss_function, compile_backend)
        elif self.name == "torch.chunked":
            if case.torch_chunked is None:
                raise NotApplicable("PyTorch has no chunked path for this loss")
            options.update(case.torch_chunked(torch))
        return functools.partial(loss_function, **options)

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        return _torch_autograd_call(case, self.loss_function(case), arrays, device)


class TorchCompiledFormula(Provider):
    """``torch.compile`` of the case's own array formulation (its several-pass peer; an elementwise loss's is
    its spec's formula): the loss and its closed-form gradient in one compiled graph, no autograd."""

    name = "torch.compile.formula"
    peer = True
    libraries = ("torch",)
    devices = frozenset({CPU, GPU})
    description = (
        "torch.compile(dynamic=False) of the case's array formulation on tensors: loss and closed-form gradient "
        "fused by Inductor, no autograd"
    )

    def not_by_default(self, device: str) -> str | None:
        return INDUCTOR_ON_CPU if device == CPU else None

    def value_and_grad(self, case: Case, compile_backend: str = "inductor") -> Callable[..., tuple[Any, Any]]:
        """``(*tensors) -> (loss, grad)``, compiled by ``compile_backend``."""
        from array_api_compat import torch as torch_namespace

        return _torch_compile(functools.partial(case.several_pass, torch_namespace, **case.options), compile_backend)

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        import torch

        value_and_grad = self.value_and_grad(case)
        tensors = [torch.from_numpy(a).to("cuda" if device == GPU else "cpu") for a in arrays]
        synchronize = _synchronize_torch_cuda if device == GPU else _nothing

        def call() -> tuple[Any, Any]:
            result = value_and_grad(*tensors)
            synchronize()
            return result

        return call


# --- JAX ----------------------------------------------------------------------------------------------


class JaxJit(Provider):
    """``jax.jit(jax.value_and_grad(loss))`` of the case's ``jax.numpy`` forward."""

    name = "jax"
    peer = True
    libraries = ("jax",)
    devices = frozenset({CPU, GPU})
    description = "jax.jit(jax.value_and_grad(loss)) of a jax.numpy forward (int32 class indices: no x64)"

    def unavailable(self, device: str) -> str | None:
        reason = super().unavailable(device)
        if reason is None and device == GPU:
            import jax

            if not any(d.platform == "gpu" for d in jax.devices()):
                return "this JAX has no GPU backend (install jax[cuda12])"
        return reason

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        import jax
        import jax.numpy as jnp

        target_device = next(d for d in jax.devices() if d.platform == GPU) if device == GPU else jax.devices(CPU)[0]
        args = tuple(jax.device_put(a.astype(np.int32) if a.dtype == np.int64 else a, target_device) for a in arrays)
        argnums = case.differentiable if len(case.differentiable) > 1 else case.differentiable[0]
        loss = functools.partial(case.jax_loss, jnp, **case.options)
        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=argnums))

        def call() -> tuple[Any, Any]:
            return jax.block_until_ready(value_and_grad(*args))

        return call


# --- Liger-Kernel -------------------------------------------------------------------------------------


class Liger(Provider):
    """Liger-Kernel's Triton loss module, forward then ``backward()`` (it writes the gradient in place)."""

    name = "liger"
    peer = True
    libraries = ("torch", "liger_kernel.transformers")
    devices = frozenset({GPU})
    description = "Liger-Kernel loss module (Triton); the gradient is computed in the forward, in place"

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        if case.liger is None:
            raise NotApplicable("Liger-Kernel has no kernel for this loss")
        from liger_kernel import transformers

        return _torch_autograd_call(case, case.liger(transformers), arrays, device)


class CutCrossEntropy(Provider):
    """Apple's cut-cross-entropy (``cut_cross_entropy.linear_cross_entropy``): the linear head's loss without
    the logits in memory, forward then ``backward()``."""

    name = "cut-cross-entropy"
    peer = True
    libraries = ("torch", "cut_cross_entropy")
    devices = frozenset({GPU})
    description = "cut-cross-entropy linear_cross_entropy (Triton), forward then backward"

    def prepare(self, case: Case, arrays: tuple[np.ndarray, ...], device: str) -> Call:
        if case.name != "linear_cross_entropy":
            raise NotApplicable("cut-cross-entropy has a kernel for linear_cross_entropy only")
        from cut_cross_entropy import linear_cross_entropy

        return _torch_autograd_call(case, linear_cross_entropy, arrays, device)


PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (
        LosskBackend("array_api", frozenset({CPU, GPU})),
        LosskBackend("numba", frozenset({CPU})),
        LosskHessian("numba", frozenset({CPU})),
        LosskBackend("cupy", frozenset({GPU})),
        LosskTorch(),
        LosskJax(),
        SeveralPass("numpy", CPU),
        SeveralPass("cupy", GPU),
        TorchAutograd("torch"),
        TorchAutograd("torch.compile"),
        TorchAutograd("torch.chunked"),
        TorchCompiledFormula(),
        JaxJit(),
        Liger(),
        CutCrossEntropy(),
    )
}
"""Every provider, lossk's first; ``--providers`` names them."""
