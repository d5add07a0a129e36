"""The pipeline's settings: the choices a calibration is valid for.

A calibration records the settings it was made with (and the pipeline revision); one
made with other settings is refused rather than silently reused
(:meth:`colorcube.conformal.calibration.Calibration.check_compatible`).
"""

from __future__ import annotations

import dataclasses

import torch

from .errors import ColorcubeError, OptionError

__all__ = ["PRECISIONS", "PipelineSettings", "REVISION", "SCALES"]

#: the network's arithmetic, by name
PRECISIONS = {"bfloat16": torch.bfloat16, "float32": torch.float32}
#: Pipeline revision: the version of what happens between the gray input and the stored
#: cube (its list is in git's history). Calibrations record it; one made by another revision
#: is refused, not silently reused.
REVISION = 3


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Resolution and upsampling policy; calibration is valid only for the same settings.

    Attributes
    ----------
    working_size : int, longer side of the network input in pixels (>= 32); 384 by
        default (``benchmarks/quality.py --working-size`` compares sizes)
    vividness : float or None, annealed-mean temperature (None: the model's default)
    guided : bool, edge-aware guided upsampling (False: plain bilinear)
    radius : int, guided-filter box radius on the network's output grid (1/4 of the
        working size); 2 by default, chosen on the held-out 5 % of train/
        (``python benchmarks/validation.py``)
    eps : float, guided-filter regulariser (guide in [0, 1])
    precision : {"bfloat16", "float32"}, the network's arithmetic. bfloat16 (default)
        runs the network faster on CPUs with bf16 units (``benchmarks/throughput.py``
        prints both) and suits GPUs. On a CPU
        without bf16 instructions it is correct but slow: calibrate with float32 there.
    scale : {"learned", "spread"}, the band scale: the network's error head
        (default) or the spread of its colour distribution (see :mod:`colorcube.network.model`)
    propagate : bool, spread hint colours edge-aware over the working grid
        (:func:`colorcube.guidance.propagate.blend_hints`) after the network has seen them; False
        keeps the network's own hinted output (what the network alone learned of hints)
    revision : int, the pipeline revision (:data:`REVISION`); recorded so that a
        calibration from another revision is refused instead of silently reused
    """

    working_size: int = 384
    vividness: float | None = None
    guided: bool = True
    radius: int = 2
    eps: float = 1e-3
    precision: str = "bfloat16"
    scale: str = "learned"
    propagate: bool = True
    revision: int = REVISION

    def __post_init__(self):
        if int(self.working_size) < 32:
            raise OptionError(f"working_size={self.working_size!r} is too small; use at least 32 (default 384)")
        if self.vividness is not None and not 0.0 < float(self.vividness) <= 2.0:
            raise OptionError(f"vividness={self.vividness!r} must be in (0, 2]; lower is more saturated")
        if self.revision != REVISION:
            raise ColorcubeError(f"these settings come from colorcube pipeline revision {self.revision}; this version "
                                 f"runs revision {REVISION}: recalibrate with `colorcube calibrate`")
        if self.precision not in PRECISIONS:
            raise OptionError(f"precision={self.precision!r}: use one of {sorted(PRECISIONS)}")
        if self.scale not in SCALES:
            raise OptionError(f"scale={self.scale!r}: use one of {SCALES}")

    @classmethod
    def of(cls, calibration) -> PipelineSettings:
        """The settings ``calibration`` was made with; the defaults when it is None."""
        if calibration is None:
            return cls()
        # calibrations from before the revision field are revision 1
        return cls(**{"revision": 1, **calibration.provenance["settings"]})

    def as_dict(self, model=None) -> dict:
        d = dataclasses.asdict(self)
        if model is not None and d["vividness"] is None:
            d["vividness"] = model.config.vividness
        return d


#: band-scale kinds :func:`colorcube.network.decode.predict` can decode
SCALES = ("learned", "spread")
