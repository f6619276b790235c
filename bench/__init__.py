"""lossk's benchmark: every loss, every lossk backend and every installed peer, timed side by side.

Run it from the repository root with ``python -m bench`` (``--help`` lists the options). The same matrix
runs as pytest-benchmark tests: ``pytest bench/ --benchmark-only``.
"""
