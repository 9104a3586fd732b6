"""The edit_pairs stage's file: round trip, the empty set of the paper profile, and its checks."""

from __future__ import annotations

import numpy as np
import pytest

from sisgan.errors import DataError
from sisgan.train.pairs import EditPairs, load_pairs, pairs_grid, save_pairs


def _pairs(k: int, n: int = 5) -> EditPairs:
    rng = np.random.default_rng(k)
    return EditPairs(
        [f"img{i}" for i in range(n)],
        rng.integers(0, 256, (k, n, 8, 8, 3), dtype=np.uint8),
        rng.normal(size=(k, n, 4)).astype(np.float32),
        [[f"a red bird {j}-{i}" for i in range(n)] for j in range(k)],
        [{"words": ["red", "crimson"], "rgb": [200.0, 30.0, 30.0]}],
    )


@pytest.mark.parametrize("k", [0, 2])
def test_pairs_file_round_trip(tmp_path, k):
    pairs = _pairs(k)
    save_pairs(tmp_path / "p" / "pairs.npz", pairs)
    back = load_pairs(tmp_path / "p" / "pairs.npz", pairs.image_ids, k)
    np.testing.assert_array_equal(back.images, pairs.images)
    np.testing.assert_array_equal(back.features, pairs.features)
    assert back.captions == pairs.captions and back.colours == pairs.colours and back.variants == k
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["pairs.npz"]  # no temporary left


def test_pairs_file_is_checked_against_the_shards_and_params(tmp_path):
    pairs = _pairs(2)
    path = tmp_path / "pairs.npz"
    with pytest.raises(DataError, match="run `dvc repro edit_pairs` first"):
        load_pairs(path, pairs.image_ids, 2)
    save_pairs(path, pairs)
    with pytest.raises(DataError, match="not aligned with the current shards"):
        load_pairs(path, pairs.image_ids[::-1], 2)
    with pytest.raises(DataError, match="holds 2 pair sets, gan.swap_variants asks for 4"):
        load_pairs(path, pairs.image_ids, 4)


def test_pairs_grid_shows_sources_and_targets(tmp_path):
    from PIL import Image

    images = np.zeros((5, 8, 8, 3), np.uint8)
    for k in (0, 2):
        pairs_grid(images, _pairs(k), tmp_path / f"grid{k}.png", rows=3)
        with Image.open(tmp_path / f"grid{k}.png") as im:
            assert im.size[1] > 3 * 90  # three rows of 96-pixel tiles
