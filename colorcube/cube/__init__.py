"""The cube as data: its schema and attributes, zarr storage, an archive's index and lock, and plain
file exports (PNG, npz).

May import: the core modules, inputs, guidance, network, render and conformal.
"""
