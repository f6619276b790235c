"""``lossk._kernels`` in a source checkout: the project's ``kernels/`` folder, as in every install.

An install maps ``kernels/`` to the subpackage ``lossk._kernels`` (``package-dir`` in ``pyproject.toml``): the
wheel copies it to ``lossk/_kernels/``, an editable install maps the name to the checkout's ``kernels/``.
Imported from a checkout instead (``python -m bench`` or ``python -c "import lossk"`` run from the clone's
root, where ``lossk/`` comes first on ``sys.path`` and shadows any install), ``lossk`` is the source folder,
which has no ``_kernels``. Imported first by ``lossk/__init__.py``, :func:`map_kernels` gives the checkout the editable install's mapping: the
checkout's own ``kernels/`` becomes the package ``lossk._kernels``, under that name, so that

- its submodules import as ``lossk._kernels.numba...`` from ``kernels/numba/`` (Numba's ``cache=True``
  keeps its cache beside those files, in ``kernels/numba/__pycache__``, as under an editable install);
- ``importlib.resources.files("lossk._kernels.cuda")`` lists ``kernels/cuda/`` (the CUDA sources).

The same files are used whichever way lossk is run: the checkout's own (source tree, editable install), or
their copy in the wheel.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

KERNELS = "_kernels"


def map_kernels(package: str, package_file: str) -> None:
    """Load ``<checkout>/kernels`` as ``{package}._kernels`` when ``package`` is imported from a checkout.

    A checkout is recognised by ``pyproject.toml`` and ``kernels/__init__.py`` beside the package folder, and
    no ``_kernels`` inside it; in an installed wheel (``lossk/_kernels/`` present) this does nothing.
    """
    package_dir = Path(package_file).parent
    root = package_dir.parent
    kernels_init = root / "kernels" / "__init__.py"
    name = f"{package}.{KERNELS}"
    if name in sys.modules or (package_dir / KERNELS).exists():
        return
    if not (kernels_init.is_file() and (root / "pyproject.toml").is_file()):
        return
    spec = importlib.util.spec_from_file_location(
        name, kernels_init, submodule_search_locations=[str(kernels_init.parent)]
    )
    assert spec is not None and spec.loader is not None  # a file location always gives a spec
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    setattr(sys.modules[package], KERNELS, module)


map_kernels(__package__, sys.modules[__package__].__file__)
