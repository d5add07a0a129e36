"""From the working stage's coefficients to pixels: the full-resolution kernel, the storage codes,
and the band rule (nested interval, outward rounding, pins at hints) every path shares.

May import: the core modules, inputs, guidance and network.
"""
