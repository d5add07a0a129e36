"""Photos coming in: any image file or array read as gray in [0, 1] (one luma, one rule for arrays),
damage checks, the sources of an archive, and simulated damage for evaluation and training.

May import: the core modules (errors, color, files, settings, metrics) only.
"""
