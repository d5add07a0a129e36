"""Training the network (v3: ImageNet encoder + U-Net decoder; v2: a network trained from scratch) on a folder
of colour photos: samples, hints simulated as at inference, checkpoints and resume.

May import: what network may (the core modules, inputs, guidance) and network itself.
"""
