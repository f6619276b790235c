"""One generated Numba kernel module per elementwise loss (``<loss name>.py``), written from the loss-spec table.

Do not edit the modules here: edit the loss's spec in ``lossk/_losses/`` and run
``python -m lossk._losses.generate``. The host side (``lossk._backends.numba.elementwise``) imports a module
on the first call of its loss, so a process compiles (or loads from Numba's cache) only the kernels it uses.
"""
