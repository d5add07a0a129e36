import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from colorcube.errors import ColorcubeError
from colorcube.network.model_v3 import ColorNetV3
from colorcube.network.train.train_v3 import V3Options, colour_loss_v3, train_v3
from colorcube.network.weights import load_weights


def _decrease(losses):
    """First-quarter mean minus last-quarter mean, and 3 standard errors of that difference."""
    losses = np.asarray(losses)
    k = max(2, len(losses) // 4)
    first, last = losses[:k], losses[-k:]
    return first.mean() - last.mean(), 3 * np.sqrt(first.var(ddof=1) / k + last.var(ddof=1) / k)


@pytest.mark.slow
def test_v3_training_from_the_imagenet_encoder_lowers_the_loss_and_resumes(tmp_path, photo_dir):
    # validation after every step (val_seconds=0), so the history holds each step's loss
    opts = V3Options(frozen_batch=8, finetune_batch=4, crop=64, max_steps=60, device="cpu", val_fraction=0.2,
                     error_split=0.0, workers=0, val_seconds=0.0, checkpoint_seconds=1e9, hint_none=1.0, degrade=0.0,
                     frozen_minutes=60, finetune_minutes=60, error_minutes=60)
    history = train_v3(photo_dir, tmp_path / "run", options=opts, progress=False)
    frozen = [h["train_loss"] for h in history if h["phase"] == "frozen" and h.get("train_loss") is not None]
    drop, noise = _decrease(frozen)
    assert len(frozen) >= 50 and drop > noise
    # the encoder started from ImageNet and stayed fixed through the frozen phase
    assert (tmp_path / "run" / "features.pt").is_file()
    best, final = (load_file(str(tmp_path / "run" / f)) for f in ("best.safetensors", "final.safetensors"))
    assert all(torch.equal(best[k], final[k]) for k in best if not k.startswith("error."))
    assert any(not torch.equal(best[k], final[k]) for k in best if k.startswith("error."))
    model = load_weights(tmp_path / "run" / "final.safetensors")
    assert isinstance(model, ColorNetV3)
    assert model.config.vividness == next(h["vividness"] for h in history if "vividness" in h)
    assert [h["phase"] for h in history if "vividness" in h] == ["error"]
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert len(lines) == len(history)
    # a finished run resumes to "done" without training again; a missing checkpoint is named
    again = train_v3(photo_dir, tmp_path / "run", options=opts, resume=True, progress=False)
    assert len(again) == len(history)
    with pytest.raises(ColorcubeError, match="checkpoint.pt"):
        train_v3(photo_dir, tmp_path / "other", options=opts, resume=True, progress=False)


def test_colour_loss_is_lowest_at_the_truth():
    torch.manual_seed(0)
    model = ColorNetV3()
    ab = torch.zeros(1, 2, 8, 8)
    ab[:, 0], ab[:, 1] = 30.0, -20.0
    bins = model.bins
    near = torch.cdist(torch.tensor([[30.0, -20.0]]), bins)[0]
    good = (-near**2 / 50).reshape(1, -1, 1, 1).expand(1, -1, 2, 2).contiguous()
    flat = torch.zeros_like(good)
    wrong = (-torch.cdist(torch.tensor([[-40.0, 50.0]]), bins)[0] ** 2 / 50).reshape(1, -1, 1, 1).expand(1, -1, 2, 2)
    losses = [float(colour_loss_v3(z, ab, bins, sigma=5.0, l1_weight=10.0)) for z in (good, flat, wrong)]
    assert losses[0] < losses[1] < losses[2]
