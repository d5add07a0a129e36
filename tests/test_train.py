import json

import numpy as np
import pytest
import torch

from colorcube.errors import ColorcubeError
from colorcube.model import load_weights
from colorcube.train import Bank, TrainOptions, rebalance_weights, sample_crops, train


@pytest.mark.slow
def test_short_training_run_lowers_loss_and_resumes(tmp_path, photo_dir):
    opts = TrainOptions(minutes=10, batch=4, crop=64, max_steps=80, width=8, device="cpu", val_fraction=0.2,
                        lr=3e-3, checkpoint_seconds=1e9)
    history = train(photo_dir, tmp_path / "run", options=opts, progress=False)
    ce = np.array([h["train_ce"] for h in history])
    k = max(2, len(ce) // 4)
    first, last = ce[:k], ce[-k:]
    # a real decrease, not noise: more than 3 standard errors of the difference of means
    se = np.sqrt(first.var(ddof=1) / k + last.var(ddof=1) / k)
    assert first.mean() - last.mean() > 3 * se
    assert (tmp_path / "run" / "best.safetensors").is_file()
    model = load_weights(tmp_path / "run" / "last.safetensors")
    assert model.config.width == 8
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert len(lines) == len(history) and "val_psnr" in json.loads(lines[-1])
    # resume continues from the saved step count
    more = train(photo_dir, tmp_path / "run", options=TrainOptions(**{**opts.__dict__, "max_steps": 90}),
                 resume=True, progress=False)
    assert more[-1]["step"] == 90 and more[0]["step"] == history[0]["step"]


def test_crops_are_in_range_and_flip():
    pix = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    pix[0, 0, :, :16] = 255  # left half red
    bank = Bank(pix, torch.tensor([[32, 32]]), ["x"])
    gen = torch.Generator().manual_seed(0)
    crops = sample_crops(bank, 64, 16, (1.0, 1.0), gen)
    assert crops.shape == (64, 3, 16, 16) and 0 <= float(crops.min()) and float(crops.max()) <= 1
    red_left = crops[:, 0, :, :4].mean(dim=(1, 2)) > crops[:, 0, :, -4:].mean(dim=(1, 2))
    assert 0 < red_left.float().mean() < 1  # both orientations occur


def test_rebalance_weights_favour_rare_colours():
    bins = torch.tensor([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    prior = torch.tensor([0.9, 0.08, 0.02])
    w = rebalance_weights(prior, bins, strength=1.0, sigma=5.0)
    assert w[2] > w[1] > w[0]
    assert torch.allclose((prior * w).sum(), torch.tensor(1.0))
    assert torch.allclose(rebalance_weights(prior, bins, strength=0.0, sigma=5.0), torch.ones(3))


def test_training_folder_errors(tmp_path, photo_dir):
    with pytest.raises(ColorcubeError, match="not found"):
        train(tmp_path / "nope", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ColorcubeError, match="at least 3"):
        train(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(ColorcubeError, match="no checkpoint"):
        train(photo_dir, tmp_path / "fresh", options=TrainOptions(width=8, device="cpu"), resume=True,
              progress=False)
