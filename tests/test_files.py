"""Files written whole or not at all."""

import numpy as np
import pytest

from colorcube.files import atomic_path


def test_atomic_path_replaces_whole_files_or_leaves_them_alone(tmp_path):
    target = tmp_path / "cal.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["cal.npz"]
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        np.savez(tmp, x=np.arange(3))  # numpy appends no second suffix
    np.testing.assert_array_equal(np.load(target)["x"], np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.npz"]
