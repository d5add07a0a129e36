import numpy as np
import pytest

from colorcube.errors import OptionError
from colorcube.render.codes import COMPRESSIONS, check_compression, decode, encode_gray


def test_gray_code_is_exact_for_8_and_16_bit():
    k8 = np.arange(256, dtype=np.uint8)
    assert encode_gray(k8 / np.float32(255)).dtype == np.uint8  # 8-bit sources keep one byte a pixel
    np.testing.assert_array_equal(decode(encode_gray(k8 / np.float32(255))), k8 / np.float32(255))
    k16 = np.arange(0, 65536, 7, dtype=np.uint16)
    g16 = k16.astype(np.float32) / np.float32(65535)
    assert encode_gray(g16).dtype == np.uint16
    np.testing.assert_array_equal(decode(encode_gray(g16)), g16)


def test_compression_names_are_checked_as_options():
    assert [check_compression(c) for c in COMPRESSIONS] == list(COMPRESSIONS)
    with pytest.raises(OptionError, match="use one of none, lz4, zstd") as info:
        check_compression("gzip")
    assert isinstance(info.value, ValueError)
