"""Optional backends: each module registers its implementations with ``lossk._dispatch`` when imported."""
