"""The colour network: architecture, decoding of its outputs, the one hint encoding of its input,
weight files, the pretrained encoder, the working stage and its guided filter; ``train/`` trains it.

May import: the core modules, inputs and guidance.
"""
