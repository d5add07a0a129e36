"""Which calibration serves a run or a cube: the shipped one, a ``.cal`` file, a Calibration, or the
one a cube's attributes name; and the hint points a calibration was made with."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

from ..errors import CalibrationError, OptionError
from .calibration import Calibration

__all__ = [
    "calibration_hint_points",
    "cube_calibration",
    "default_calibration_path",
    "resolve_calibration",
]


def calibration_hint_points(calibration) -> int:
    """Simulated hint points per photo a calibration was made with (0: none, or no calibration)."""
    return 0 if calibration is None else calibration.hint_points


def default_calibration_path() -> Path:
    """Path of the calibration shipped with the default weights."""
    return Path(str(resources.files("colorcube") / "weights" / "default.cal"))


@functools.lru_cache(maxsize=4)
def _read_calibration(path: str, mtime_ns: int) -> Calibration:
    """A ``.cal`` file read and checksummed once per version of the file (``mtime_ns`` keys
    the cache, so a rewritten file is read again)."""
    return Calibration.from_file(path)


def resolve_calibration(calibration, model=None):
    """``"default"``, a path, a Calibration or None -> Calibration or None.

    Files are read once per process (and again when they change); a calibration made for
    another model than ``model`` is refused (CalibrationError).
    """
    if calibration is None or isinstance(calibration, Calibration):
        return calibration
    if isinstance(calibration, str) and calibration == "default":
        path = default_calibration_path()
    elif isinstance(calibration, (str, Path)):
        path = Path(calibration)
    else:
        raise OptionError(f"calibration={calibration!r}: give 'default', a .cal path, a Calibration or None")
    if not path.is_file():
        raise CalibrationError(f"{path}: calibration file not found")
    cal = _read_calibration(str(path.resolve()), path.stat().st_mtime_ns)
    if getattr(model, "weights_hash", None) is not None:
        cal.check_compatible(model_hash=model.weights_hash, where=str(path))
    return cal


#: the fields of a calibration's summary that identify it (later releases may add others)
_IDENTITY = ("model_hash", "date", "source", "n_images", "method", "weighted")


def cube_calibration(attrs: dict, calibration=None) -> Calibration:
    """The calibration that serves a cube's bands at other alphas (accessor and explorer alike).

    Parameters
    ----------
    attrs : the cube's attributes (``calibrated``, ``calibration``, ``model_hash``, ``settings``)
    calibration : None, ``"default"``, a ``.cal`` path or a Calibration
        None: the calibration the cube's ``calibration`` attribute names, found when it is
        the shipped one. Otherwise the one given. Either must be made for the cube's model
        and pipeline settings.

    Raises
    ------
    CalibrationError
        The cube is uncalibrated and none is given, it names a calibration other than the
        shipped one, or the calibration is for another model or other settings.
    """
    if calibration is None:
        if not int(attrs.get("calibrated", 0)):
            raise CalibrationError("calibration: the cube's bands are uncalibrated (attribute 'calibrated' is 0), "
                                   "so no calibration serves other alphas; pass calibration= (a .cal path or a "
                                   "Calibration made for this cube's model)")
        try:
            named = json.loads(attrs.get("calibration") or "")
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"calibration: the cube's 'calibration' attribute is not the JSON summary of "
                                   f"a calibration ({exc}); pass calibration=") from exc
        calibration = resolve_calibration("default")
        shipped = json.loads(json.dumps(calibration.summary()))
        if any(shipped.get(k) != named.get(k) for k in _IDENTITY):
            raise CalibrationError(
                f"calibration: the cube names a calibration of {named.get('n_images', '?')} images "
                f"({named.get('source') or 'unnamed source'}, {named.get('date') or 'undated'}, model "
                f"{str(named.get('model_hash', ''))[:12]}), which is not the shipped one; pass calibration= "
                "the .cal file the cube was made with")
    cal = resolve_calibration(calibration)  # model: checked below against the cube's own hash
    try:
        settings = json.loads(attrs.get("settings") or "{}")
    except (TypeError, ValueError):
        settings = {}
    cal.check_compatible(model_hash=str(attrs.get("model_hash", "")) or None, settings=settings, where="calibration")
    return cal
