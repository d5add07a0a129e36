import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from colorcube.errors import ColorcubeError
from colorcube.network.train.train_v2 import TrainOptions, train
from colorcube.network.train.trainset import (
    Bank,
    jitter,
    random_hints,
    rebalance_weights,
    sample_crops,
    split_by_source,
)
from colorcube.network.weights import load_weights


@pytest.mark.slow
def test_short_training_run_lowers_loss_and_resumes(tmp_path, photo_dir):
    # no rebalancing and no hints: the plainest loss, so that 100 steps show a clear decrease
    opts = TrainOptions(minutes=60, batch=4, crop=64, max_steps=120, width=8, device="cpu", val_fraction=0.2,
                        error_split=0.0, lr=3e-3, checkpoint_seconds=1e9, error_fraction=1 / 6, workers=0,
                        rebalance=0.0, hint_none=1.0)
    history = train(photo_dir, tmp_path / "run", options=opts, progress=False)
    ce = np.array([h["train_loss"] for h in history if h["phase"] == 1 and h["train_loss"] is not None])
    k = max(2, len(ce) // 4)
    first, last = ce[:k], ce[-k:]
    # a real decrease, not noise: more than 3 standard errors of the difference of means
    se = np.sqrt(first.var(ddof=1) / k + last.var(ddof=1) / k)
    assert first.mean() - last.mean() > 3 * se
    assert (tmp_path / "run" / "best.safetensors").is_file()
    # the error phase ran, with the colour network frozen, and chose a vividness on validation
    assert [h["phase"] for h in history if "vividness" in h] == [1]
    assert sum(h["phase"] == 2 for h in history) >= 4
    # the error phase changed the error head only: the colour layers are the best checkpoint's
    best, final = (load_file(str(tmp_path / "run" / f)) for f in ("best.safetensors", "final.safetensors"))
    assert all(torch.equal(best[k], final[k]) for k in best if not k.startswith("error."))
    assert any(not torch.equal(best[k], final[k]) for k in best if k.startswith("error."))
    model = load_weights(tmp_path / "run" / "final.safetensors")
    assert model.config.width == 8
    assert model.config.vividness == next(h["vividness"] for h in history if "vividness" in h)
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert len(lines) == len(history) and "val_psnr" in json.loads(lines[-1])
    # resume continues from the saved step count, in the error phase
    more = train(photo_dir, tmp_path / "run", options=TrainOptions(**{**opts.__dict__, "max_steps": 130}),
                 resume=True, progress=False)
    assert more[-1]["step"] == 130 and more[0]["step"] == history[0]["step"] and more[-1]["phase"] == 2


def test_split_is_stratified_deterministic_and_disjoint():
    names = [f"a__{i}.jpg" for i in range(200)] + [f"b__{i}.jpg" for i in range(40)] + ["c__0.jpg"]
    tr, va, er = split_by_source(names, val_fraction=0.05, error_split=0.1, seed=0)
    assert set(tr) | set(va) | set(er) == set(names) and len(tr) + len(va) + len(er) == len(names)
    assert sum(n.startswith("a__") for n in va) == 10 and sum(n.startswith("b__") for n in va) == 2
    assert sum(n.startswith("a__") for n in er) == 20 and sum(n.startswith("b__") for n in er) == 4
    assert "c__0.jpg" in va  # every source validates
    # a photo's split does not depend on the other sources
    _, va2, er2 = split_by_source(names[:200], val_fraction=0.05, error_split=0.1, seed=0)
    assert set(va2) == {n for n in va if n.startswith("a__")} and set(er2) == {n for n in er if n.startswith("a__")}


def test_random_hints_follow_the_process():
    gen = torch.Generator().manual_seed(0)
    ab = torch.randn(400, 2, 32, 32) * 30
    h = random_hints(ab, gen, none=0.5, p=0.25)
    empty = h[:, 2].sum(dim=(1, 2)) == 0
    # none ~ Binomial(400, 0.5): 4.5 standard deviations is 45
    assert abs(int(empty.sum()) - 200) < 45
    # hinted pixels hold the truth's mean over their patch: within the range of the truth there
    mask = h[:, 2] > 0
    assert set(h[:, 2].unique().tolist()) <= {0.0, 1.0}
    assert float((h[:, :2].abs() * (~mask[:, None])).max()) == 0
    assert float(h[:, :2][mask[:, None].expand(-1, 2, -1, -1)].abs().max()) <= float(ab.abs().max()) / 110
    one = random_hints(torch.full((1, 2, 16, 16), 22.0), torch.Generator().manual_seed(3), none=0.0, p=1.0)
    torch.testing.assert_close(one[0, :2][:, one[0, 2] > 0], torch.full((2, int(one[0, 2].sum())), 0.2))


def test_jitter_keeps_range_and_changes_contrast():
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(64, 3, 8, 8)
    out = jitter(rgb, gen, brightness=0.1, contrast=0.3)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    ratio = out.std(dim=(1, 2, 3)) / rgb.std(dim=(1, 2, 3))
    assert float(ratio.min()) < 0.9 and float(ratio.max()) > 1.1
    torch.testing.assert_close(jitter(rgb, gen, brightness=0.0, contrast=0.0), rgb, rtol=0, atol=1e-6)


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
