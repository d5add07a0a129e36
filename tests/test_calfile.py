"""The .cal file (conformal.calfile): a newer format is named before its checksum is checked."""

import numpy as np
import pytest

from colorcube.conformal.calibration import Calibration
from colorcube.errors import CalibrationError


def test_a_newer_format_is_named_before_its_checksum_is_checked(tmp_path, monkeypatch):
    """A file from a later colorcube (whose checksum is computed otherwise) is refused as an unknown
    format, not as a corrupted file."""
    from colorcube.conformal import calfile

    path = tmp_path / "new.cal"
    with monkeypatch.context() as m:
        m.setattr(calfile, "_digest", lambda arrays, meta: "another scheme")
        calfile.write_cal(path, {"curves": np.zeros((2, 3, 4), np.float32)}, {"format": "colorcube-calibration-99"})
    with pytest.raises(CalibrationError, match="unknown calibration format 'colorcube-calibration-99'"):
        Calibration.from_file(path)
    calfile.write_cal(path, {"curves": np.zeros((2, 3, 4), np.float32)}, {"format": "colorcube-calibration-2"})
    with monkeypatch.context() as m:  # a known format with a wrong checksum is a modified file
        m.setattr(calfile, "_digest", lambda arrays, meta: "another scheme")
        with pytest.raises(CalibrationError, match="checksum mismatch"):
            Calibration.from_file(path)
