"""What people use: the command line, the Jupyter explorer and gallery, the ``ds.colorcube``
accessor, plots, evaluation, and uncertainty triage (suggested hints, palettes).

May import: everything below (the core modules, inputs, guidance, network, render, conformal, cube,
run); the explorer is reached from the accessor and the gallery through ``colorcube.explore``.
"""
