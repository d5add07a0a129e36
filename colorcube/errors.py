"""Exceptions raised by colorcube.

Every error a user can trigger derives from :class:`ColorcubeError`, so a caller
(or the CLI) can catch one type and print a one-line message.
"""

__all__ = [
    "CalibrationError",
    "ColorcubeError",
    "HintError",
    "ImageReadError",
    "OptionError",
    "SchemaError",
    "WeightsError",
]


class ColorcubeError(Exception):
    """Base class of every error colorcube raises on purpose."""


class ImageReadError(ColorcubeError, ValueError):
    """An input file is missing, unreadable, empty, truncated or not an image."""


class CalibrationError(ColorcubeError, ValueError):
    """A calibration cannot be computed, loaded or applied as asked."""


class WeightsError(ColorcubeError, ValueError):
    """Model weights are missing, tampered with or do not match the network."""


class SchemaError(ColorcubeError, ValueError):
    """A Dataset does not follow the colorcube cube schema."""


class HintError(ColorcubeError, ValueError):
    """Colour hints (points, a scribble image, a hint file) or a reference photo are malformed."""


class OptionError(ColorcubeError, ValueError):
    """An option (keyword argument or command-line flag) with a value colorcube cannot use."""
