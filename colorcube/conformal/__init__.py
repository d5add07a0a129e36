"""Conformal calibration: estimators (CRC, RCPS, per-image), per-photo loss records, the
Calibration and its file, archive weighting (covariate shift), the statement in words, and the one
lookup of which calibration serves a run or a cube.

May import: the core modules, inputs, guidance, network and render.
"""
