"""Running photos through: the run's preparation and the one per-photo step (``colorize`` on a
photo or a list), the archive (resumable, batched, dask), and the overlapped batching of stages.

May import: the core modules, inputs, guidance, network, render, conformal and cube.
"""
