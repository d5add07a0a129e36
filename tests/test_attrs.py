"""A cube's attributes (cube.attrs): what the guarantee claims with hints, a reference, or no calibration."""

from colorcube.cube.attrs import guarantee_note


def test_guarantee_note():
    from colorcube.conformal.lookup import calibration_hint_points

    class Cal:
        hint_points = 10

    assert calibration_hint_points(Cal()) == 10 and calibration_hint_points(None) == 0
    assert guarantee_note(hint_points=0) == ""
    assert "calibration's process (10 random true-colour points" in guarantee_note(hint_points=10, n_hints=3)
    assert "calibration used no hints" in guarantee_note(hint_points=0, n_hints=3)
    uncalibrated = guarantee_note(hint_points=None, n_hints=3)
    assert "band contains the hint" in uncalibrated and "calibration" not in uncalibrated
