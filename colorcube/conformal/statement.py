"""What calibrated bands claim, in words: the sentence stored as a cube's ``guarantee``."""

from __future__ import annotations

__all__ = ["statement"]


def statement(cal, method: str, delta: float, joint: bool, beta, *, alpha: float) -> str:
    """The statistical statement of bands at miscoverage ``alpha`` served by ``cal`` (a
    :class:`colorcube.conformal.calibration.Calibration`) with these resolved options, in one sentence."""
    a = f"{1 - alpha:.3g}"
    who = (f"a new photograph exchangeable with the {cal.n} calibration images" if not cal.weighted else
           f"a photograph from the target archive ({_target_words(cal)})")
    if beta is None:
        where = ("a uniformly chosen pixel's true R, G and B values lie inside their bands, all three at once,"
                 if joint else "a uniformly chosen pixel's true value of each channel (R, G, B) lies inside that "
                 "channel's band (each channel separately, not all three at once)")
        if cal.weighted:
            return (f"Approximately: for {who}, {where} with probability at least {a}, averaged over photos "
                    "(archive-weighted conformal risk control; it assumes the colours given the gray image are as "
                    "in the calibration photos and that the estimated weights are right).")
        if method == "crc":
            return (f"For {who}, {where} with probability at least {a} (conformal risk control, expected over "
                    "images: one photograph may fall short).")
        each = "for all three of R, G, B at once" if joint else "in each channel (R, G, B) separately"
        return (f"With probability at least {1 - delta:.3g} over the calibration set, for {who} the expected "
                f"share of pixels whose true value lies inside the band is at least {a}, {each} (RCPS, "
                "Hoeffding-Bentkus).")
    share = f"{1 - beta:.3g}"
    where = ("all three of their true R, G, B values inside their bands" if joint else
             "their true value inside the band, in each channel (R, G, B) separately")
    if cal.weighted:
        return (f"Approximately: with probability at least {a}, {who} has at least {share} of its pixels with "
                f"{where} (archive-weighted per-image conformal guarantee; it assumes the colours given the gray "
                "image are as in the calibration photos and that the estimated weights are right).")
    if method == "crc":
        return (f"With probability at least {a}, {who} has at least {share} of its pixels with {where} "
                "(per-image conformal guarantee).")
    return (f"With probability at least {1 - delta:.3g} over the calibration set, at most a fraction {alpha:.3g} "
            f"of new photographs exchangeable with the {cal.n} calibration images have fewer than {share} of "
            f"their pixels with {where} (RCPS on the per-image event, Hoeffding-Bentkus).")

def _target_words(cal) -> str:
    t = cal.provenance.get("target", {})
    name = t.get("description") or "the archive"
    own = (" (each of these photos weighted by its own ratio, any other photo by the archive-wide bound)"
           if cal.target_ratios is not None else "")
    return (f"{name}, {t.get('n_images', '?')} images; likelihood ratio estimated from gray-image features{own}; "
            f"effective sample size {cal.ess:.0f} of {cal.n} calibration photos")
