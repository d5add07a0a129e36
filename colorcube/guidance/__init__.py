"""What a user adds to a photo: colour hints (one representation, parsed and validated), where they
act on the working grid and at full resolution, their propagation along lightness, reference photos.

May import: the core modules and inputs.
"""
