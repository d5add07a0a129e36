import numpy as np
import pytest
import torch

from colorcube.errors import OptionError
from colorcube.network.working import (
    decoded_maps,
    network_maps,
    network_shape,
    working_input,
    working_stage,
    working_stages,
)
from colorcube.settings import PipelineSettings


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_an_image_in_a_batch_is_computed_as_alone(shipped, precision, monkeypatch):
    """Batches of 2, 3 and 5 over shapes where oneDNN's kernels, the softplus' vector tail or the decoding
    blocks could otherwise round an image differently from its lone run (the archive relies on it)."""
    import colorcube.network.working

    sizes, real = [], colorcube.network.working.predict
    monkeypatch.setattr(colorcube.network.working, "predict",
                        lambda model, x, *a, **k: sizes.append(x.shape[0]) or real(model, x, *a, **k))
    settings = PipelineSettings(precision=precision)
    rng = np.random.default_rng(1)
    shapes = [(48, 100), (80, 176), (200, 300), (321, 176), (256, 384), (40, 2000)]
    for shape in shapes:
        grays = [rng.random(shape).astype(np.float32) for _ in range(5)]
        inputs = [working_input(g, settings) for g in grays]
        alone = [network_maps([i], shipped, settings)[0] for i in inputs]
        for batch in (2, 3, 5):
            together = network_maps(inputs[:batch], shipped, settings, batch=batch)
            for a, b in zip(alone, together):
                np.testing.assert_array_equal(a, b, err_msg=f"{shape} in a batch of {batch}")
        # the network alone in a batch, decoded image by image later (the archive): the same maps
        raw = network_maps(inputs[:3], shipped, settings, batch=3, decode=False)
        for a, r, inp in zip(alone, raw, inputs):
            assert isinstance(r, tuple) and r[0].shape[0] == 1
            np.testing.assert_array_equal(a, decoded_maps(r, inp, shipped, settings), err_msg=f"{shape} decoded later")
    # bfloat16 really ran batches; float32 (whose convolutions change algorithm with the batch) ran one at a time
    assert max(sizes) == (5 if precision == "bfloat16" else 1)
    with pytest.raises(OptionError, match="scale='learned'"):
        network_maps(inputs[:1], shipped, PipelineSettings(precision=precision, scale="spread"), decode=False)


def test_working_stages_equal_working_stage(shipped):
    rng = np.random.default_rng(2)
    grays = [rng.random((90, 130)).astype(np.float32), rng.random((130, 90)).astype(np.float32),
             rng.random((90, 130)).astype(np.float32)]
    many = working_stages(grays, shipped, batch=2)
    for g, c in zip(grays, many):
        one = working_stage(g, shipped)
        np.testing.assert_array_equal(c.coef, one.coef)
        assert c.shape == one.shape and c.extent == one.extent


def test_network_shape_pads_to_two_strides_and_keeps_the_aspect():
    settings = PipelineSettings()
    assert network_shape((2000, 5), settings) == (384, 32)  # a thin scan: at least two strides of 16
    assert network_shape((321, 481), settings) == (256, 384)
    h, w = network_shape((1000, 3000), settings)
    assert w == 384 and h % 16 == 0 and abs(h - 128) <= 16
    assert working_input(np.zeros((321, 481), np.float32), settings).padded.shape == (1, 1, 256, 384)
    assert working_input(np.zeros((321, 481), np.float32), settings).padded.dtype == torch.float32
