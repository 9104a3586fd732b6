"""Parquet shards: schema, round trip, reject paths, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sisgan.data import shards as shards_mod
from sisgan.data import synth
from sisgan.data.images import RejectedImage, load_image
from sisgan.data.shards import SourceItem, build_shards, load_split, read_manifest
from sisgan.errors import DataError


def _photo(w: int = 120, h: int = 90, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1).astype(np.uint8)
    arr = np.clip(arr.astype(int) + rng.integers(-10, 10, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _item(image_id: str, path: Path | None, split: str = "train", captions=("a red bird.",)) -> SourceItem:
    return SourceItem(image_id, 0, "cls", split, tuple(captions), path=str(path) if path else None)


def test_synth_round_trip_matches_the_renderer(synth_items, tmp_path):
    manifest = build_shards(synth_items, tmp_path / "s", dataset="synth-birds", load_size=32, shard_rows=7)
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["test"]["rows"] == len(synth_items)
    assert len(manifest["splits"]["train"]["shards"]) > 1
    for split in ("train", "test"):
        data = load_split(tmp_path / "s", split)
        expected = [i for i in synth_items if i.split == split]
        assert data.image_ids == [i.image_id for i in expected]
        assert data.images.shape == (len(expected), 32, 32, 3) and data.images.dtype == np.uint8
        for k in (0, len(expected) - 1):
            image, _ = synth.render(synth.Scene.from_record(expected[k].scene), 32)
            assert np.array_equal(data.images[k], image)
            assert data.captions[k] == list(expected[k].captions)
            assert synth.Scene.from_record(data.scenes[k]) == synth.Scene.from_record(expected[k].scene)
            named = [{p: c for p, c in a.items() if c is not None} for a in data.caption_attrs[k]]
            assert named == [dict(a) for a in expected[k].caption_attrs]
        assert {s for s in [split]} == {i.split for i in expected}


def test_schema_and_manifest(synth_items, tmp_path):
    manifest = build_shards(synth_items, tmp_path, dataset="synth-birds", load_size=24)
    assert manifest["schema_version"] == shards_mod.SCHEMA_VERSION
    assert manifest["image_format"] == "raw" and manifest["image_shape"] == [24, 24, 3]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    schema = pq.read_schema(tmp_path / manifest["splits"]["train"]["shards"][0]["file"])
    assert schema.names == [
        "image_id",
        "image",
        "captions",
        "class_id",
        "class_name",
        "split",
        "scene",
        "caption_attrs",
    ]
    assert str(schema.field("image").type) == f"fixed_size_binary[{24 * 24 * 3}]"
    assert str(schema.field("captions").type) == "list<element: string>"


def test_png_format_round_trips_losslessly(synth_items, tmp_path):
    build_shards(synth_items, tmp_path / "raw", dataset="synth-birds", load_size=32)
    build_shards(synth_items, tmp_path / "png", dataset="synth-birds", load_size=32, image_format="png")
    assert read_manifest(tmp_path / "png")["image_format"] == "png"
    a, b = load_split(tmp_path / "raw", "train"), load_split(tmp_path / "png", "train")
    assert np.array_equal(a.images, b.images)


def test_parallel_workers_write_the_same_shards(synth_items, tmp_path):
    build_shards(synth_items, tmp_path / "one", dataset="synth-birds", load_size=24, shard_rows=5, workers=1)
    build_shards(synth_items, tmp_path / "two", dataset="synth-birds", load_size=24, shard_rows=5, workers=2)
    for split in ("train", "test"):
        a, b = load_split(tmp_path / "one", split), load_split(tmp_path / "two", split)
        assert a.image_ids == b.image_ids and np.array_equal(a.images, b.images)


@pytest.fixture
def bad_files(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    _photo().save(d / "good.jpg", quality=90)
    (d / "random.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    full = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (d / "notes.txt").write_text("this is not an image\n")
    _photo(400, 300).save(d / "huge.png")
    return d


def test_each_reject_path_is_listed_with_its_reason(bad_files, tmp_path):
    items = [
        _item("good", bad_files / "good.jpg"),
        _item("random", bad_files / "random.jpg"),
        _item("truncated", bad_files / "truncated.jpg"),
        _item("text", bad_files / "notes.txt"),
        _item("missing", bad_files / "absent.jpg"),
        _item("nocaption", bad_files / "good.jpg", captions=()),
        _item("blankcaption", bad_files / "good.jpg", captions=("  ",)),
        _item("huge", bad_files / "huge.png"),
        _item("test-good", bad_files / "good.jpg", split="test"),
    ]
    manifest = build_shards(items, tmp_path / "s", dataset="x", load_size=32, max_pixels=100_000)
    reasons = {r["image_id"]: r["reason"] for r in manifest["rejected"]}
    assert set(reasons) == {"random", "truncated", "text", "missing", "nocaption", "blankcaption", "huge"}
    assert "not an image" in reasons["random"] and "not an image" in reasons["text"]
    assert "truncated" in reasons["truncated"]
    assert "cannot open" in reasons["missing"]
    assert "no captions" in reasons["nocaption"] and "no captions" in reasons["blankcaption"]
    assert "max_pixels" in reasons["huge"]
    assert load_split(tmp_path / "s", "train").image_ids == ["good"]
    assert manifest["splits"]["test"]["rows"] == 1


def test_nothing_left_is_an_error_and_writes_no_manifest(bad_files, tmp_path):
    with pytest.raises(DataError, match="every input image was rejected"):
        build_shards([_item("t", bad_files / "notes.txt")], tmp_path / "s", dataset="x", load_size=32)
    assert not (tmp_path / "s" / "manifest.json").exists()


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_other_modes_become_rgb(mode, tmp_path):
    src = _photo()
    if mode == "I;16":
        im = src.convert("L").convert("I;16")
        path = tmp_path / "x.png"
    elif mode == "CMYK":
        im, path = src.convert("CMYK"), tmp_path / "x.jpg"
    elif mode == "RGBA":
        im = src.convert("RGBA")
        im.putalpha(0)  # fully transparent -> composited on white
        path = tmp_path / "x.png"
    else:
        im, path = src.convert(mode), tmp_path / ("x.jpg" if mode == "L" else "x.png")
    im.save(path)
    out = load_image(path, 32, 10**7)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if mode == "RGBA":
        assert out.min() >= 250
    if mode in ("L", "I;16"):
        assert np.array_equal(out[..., 0], out[..., 1])


def test_non_square_images_are_centre_cropped(tmp_path):
    arr = np.zeros((60, 180, 3), np.uint8)
    arr[:, 60:120] = 255  # the centre square is white, the sides black
    Image.fromarray(arr).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 30, 10**7)
    assert out.mean() > 250


def test_reject_is_raised_for_bytes_too():
    with pytest.raises(RejectedImage):
        load_image(b"\x89PNG\r\n\x1a\nbroken", 32, 10**6)


# Section: atomicity.


def test_a_crash_mid_write_leaves_nothing_the_reader_accepts(synth_items, tmp_path, monkeypatch):
    out = tmp_path / "s"
    calls = {"n": 0}
    real_write = shards_mod.pq.write_table

    def flaky_write(table, where, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(where).write_bytes(b"PAR1 half a shard")  # a partial file, then the process dies
            raise OSError("disk full")
        return real_write(table, where, **kw)

    monkeypatch.setattr(shards_mod.pq, "write_table", flaky_write)
    with pytest.raises(OSError, match="disk full"):
        build_shards(synth_items, out, dataset="synth-birds", load_size=24, shard_rows=5)
    assert not list(out.glob(".*tmp*")), "temporary files are cleaned up"
    with pytest.raises(DataError, match="manifest.json"):
        load_split(out, "train")


def test_reader_rejects_a_shard_that_does_not_match_the_manifest(synth_items, tmp_path):
    manifest = build_shards(synth_items, tmp_path, dataset="synth-birds", load_size=24, shard_rows=5)
    first = tmp_path / manifest["splits"]["train"]["shards"][0]["file"]
    table = pq.read_table(first)
    pq.write_table(table.slice(0, 2), first)  # a shard cut short
    with pytest.raises(DataError, match="rows, the manifest says"):
        load_split(tmp_path, "train")
    first.write_bytes(b"garbage")
    with pytest.raises(DataError, match="unreadable"):
        load_split(tmp_path, "train")


def test_rebuilding_removes_stale_shards(synth_items, tmp_path):
    build_shards(synth_items, tmp_path, dataset="synth-birds", load_size=24, shard_rows=2)
    many = len(list(tmp_path.glob("*.parquet")))
    build_shards(synth_items, tmp_path, dataset="synth-birds", load_size=24, shard_rows=100)
    assert len(list(tmp_path.glob("*.parquet"))) == 2 < many
