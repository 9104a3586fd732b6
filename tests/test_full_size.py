"""Edits at the photo's own resolution: the view box, the upsampling, compositing, Generator.layers, and the
full-size option of the API, the CLI and the demo (the server's is in test_serving.py)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_bundle import CAPTIONS, IMAGE_SIZE, LOAD_SIZE, make_bundle, photo

from sisgan.compositing import composite, upsample_weights, view_box
from sisgan.errors import DataError
from sisgan.inference import ImageTooLargeError, Manipulator

TEXT = CAPTIONS[0]


def box_pixels(width: int, height: int) -> tuple[slice, slice]:
    """(rows, columns) of the photo pixels whose centres lie in the model's view box."""
    box = view_box(width, height, LOAD_SIZE, IMAGE_SIZE)
    y0, wy = upsample_weights(height, box.top, box.side, box.size)
    x0, wx = upsample_weights(width, box.left, box.side, box.size)
    return slice(y0, y0 + len(wy)), slice(x0, x0 + len(wx))


def outside(image: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    keep = np.ones(image.shape[:2], bool)
    keep[rows, cols] = False
    return image[keep]


# Section: geometry and compositing (no model).


def test_view_box_is_the_crop_the_model_sees():
    from sisgan.data.images import center_crop, square_resize

    box = view_box(500, 375, 37, 32)  # a landscape photo, the photos profile's sizes
    assert (box.top, box.size) == (2 * 375 / 37, 32)
    assert box.left == pytest.approx(62 + 2 * 375 / 37) and box.side == pytest.approx(32 * 375 / 37)
    # On a photo that is a linear ramp, the model's source pixel j has the ramp's value at the photo position
    # the box maps it to (bicubic resampling keeps a linear function).
    ramp = np.broadcast_to((np.arange(500) * 0.4)[None, :, None], (375, 500, 3))
    seen = center_crop(square_resize(Image.fromarray(np.rint(ramp).astype(np.uint8)), 37), 32)[16, :, 0]
    centres = box.left + (np.arange(32) + 0.5) * box.side / 32
    np.testing.assert_allclose(seen[4:28], np.rint(centres[4:28] * 0.4), atol=1.0)
    shifted = centres + box.side / 32  # one model pixel off: the test can tell
    assert np.abs(seen[4:28] - shifted[4:28] * 0.4).min() > 2


def test_upsample_weights_cover_the_box_and_interpolate():
    first, w = upsample_weights(100, 10.0, 40.0, 4)  # 4 model pixels over photo pixels 10..49
    assert first == 10 and w.shape == (40, 4)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    ramp = w @ np.arange(4, dtype=np.float32)
    assert (np.diff(ramp) >= 0).all() and ramp[0] == 0 and ramp[-1] == 3  # clamped at the edges
    first, w = upsample_weights(30, -5.0, 50.0, 4)  # a box larger than the photo: clipped to it
    assert first == 0 and len(w) == 30


def test_composite_keeps_the_outside_and_applies_the_edit_inside():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    box = view_box(70, 45, LOAD_SIZE, IMAGE_SIZE)
    rows, cols = box_pixels(70, 45)
    zero = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    assert (composite(image, box, change=zero) == image).all()
    closed = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    assert (composite(image, box, mask=closed, repaint=zero + 123) == image).all()
    red = np.broadcast_to(np.array([255, 0, 0], np.float32), zero.shape)
    painted = composite(image, box, mask=closed + 1, repaint=red)
    assert painted.shape == image.shape
    assert (outside(painted, rows, cols) == outside(image, rows, cols)).all()
    assert (painted[rows, cols] == [255, 0, 0]).all()
    shifted = composite(image, box, change=zero + 10)
    inside = image[rows, cols].astype(int)
    assert (shifted[rows, cols] == np.clip(inside + 10, 0, 255)).all()
    with pytest.raises(ValueError, match="either change"):
        composite(image, box, change=zero, mask=closed, repaint=zero)


# Section: Generator.layers.


@pytest.mark.parametrize("output", ["mask", "paint"])
def test_layers_blend_into_the_forward_output(output):
    from sisgan.models import Generator

    torch.manual_seed(0)
    g = Generator(16, 12, 0.125, output=output, vocab_size=9).eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    text, noise = torch.randn(3, 12), torch.zeros(3, g.cond_dim)
    words = (torch.tensor([[2, 3, 0], [4, 5, 6], [7, 0, 0]]),) if g.reads_words else ()
    with torch.no_grad():
        mask, repaint = g.layers(x, text, noise, *words)
        out = g(x, text, noise, *words)[0]
    assert mask.shape == (3, 1, 16, 16) and repaint.shape == (3, 3, 16, 16)
    assert 0 <= mask.min() and mask.max() <= 1 and repaint.abs().max() <= 1
    torch.testing.assert_close(mask * repaint + (1 - mask) * x, out)
    assert not g.to_rgb._forward_hooks and (g.paint is None or not g.paint._forward_hooks)  # hooks removed
    with pytest.raises(ValueError, match="no mask"):
        Generator(16, 12, 0.125).layers(x, text, noise)


# Section: the Python API.


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    return {
        name: Manipulator.load(make_bundle(root / name, output=output, closed=closed))
        for name, output, closed in (
            ("direct", "direct", False),
            ("mask", "mask", False),
            ("paint", "paint", False),
            ("closed", "mask", True),
        )
    }


@pytest.mark.parametrize(("name", "blend"), [("direct", "change"), ("mask", "change"), ("mask", "layers"),
                                             ("paint", "layers")])  # fmt: skip
def test_full_size_is_the_photo_edited_inside_the_box_only(models, name, blend):
    m = models[name]
    source = photo(73, 41, seed=1)
    out = np.asarray(m.manipulate(source, TEXT, full_size=True, blend=blend))
    original = np.asarray(source)
    assert out.shape == original.shape
    rows, cols = box_pixels(73, 41)
    assert (outside(out, rows, cols) == outside(original, rows, cols)).all()
    assert (out[rows, cols] != original[rows, cols]).any()  # a random model does change its input
    assert m.manipulate(source, TEXT).size == (IMAGE_SIZE, IMAGE_SIZE)  # the default is unchanged


@pytest.mark.parametrize("blend", ["change", "layers"])
def test_a_closed_mask_returns_the_photo_bit_for_bit(models, blend):
    m = models["closed"]
    source = photo(90, 64, seed=2)
    assert (np.asarray(m.manipulate(source, TEXT, full_size=True, blend=blend)) == np.asarray(source)).all()
    assert (np.asarray(m.manipulate(source, TEXT)) == m.source(source)).all()


def test_change_blend_reproduces_the_model_output_at_the_model_size(models):
    """A photo the size of the model's view: the full-size change edit is the model's output itself."""
    m = models["mask"]
    square = photo(LOAD_SIZE, LOAD_SIZE, seed=3)
    full = np.asarray(m.manipulate(square, TEXT, full_size=True))
    o = (LOAD_SIZE - IMAGE_SIZE) // 2
    np.testing.assert_array_equal(
        full[o : o + IMAGE_SIZE, o : o + IMAGE_SIZE], np.asarray(m.manipulate(square, TEXT))
    )


def test_exif_rotation_and_the_pixel_cap(models, tmp_path):
    m = models["mask"]
    upright = photo(40, 70, seed=4)  # portrait, as the camera's EXIF says to show it
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # the sensor's landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    out = m.manipulate(path, TEXT, full_size=True)
    assert out.size == (40, 70)
    with Image.open(path) as im:
        shown = np.asarray(im.transpose(Image.Transpose.ROTATE_270).convert("RGB"))
    rows, cols = box_pixels(40, 70)
    assert (outside(np.asarray(out), rows, cols) == outside(shown, rows, cols)).all()
    small = Manipulator(m.generator, m.text_model, m.load_size, max_pixels=1000)
    with pytest.raises(ImageTooLargeError, match="over the limit of 1,000 pixels"):
        small.manipulate(path.read_bytes(), TEXT, full_size=True)


def test_bad_blends_are_one_sentence(models):
    with pytest.raises(DataError, match="needs a generator with a mask.*use blend 'change'"):
        models["direct"].manipulate(photo(), TEXT, full_size=True, blend="layers")
    with pytest.raises(DataError, match="blend 'soft' is unknown"):
        models["mask"].manipulate(photo(), TEXT, full_size=True, blend="soft")  # type: ignore[arg-type]


# Section: the CLI and the demo.


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sisgan.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_full_size_outputs_and_grid(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", output="mask")
    source = tmp_path / "photo.jpg"
    photo(120, 80, seed=5).save(source, quality=95)
    base = ["manipulate", "--model", str(bundle), "--image", str(source), "--text", TEXT]
    proc = cli(*base, "--full-size", "--blend", "layers", "--out", "full.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "full.png").size == (120, 80)
    proc = cli(*base, "--text", "a small green bird", "--full-size", "--grid", "--out", "g.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    width, height = Image.open(tmp_path / "g.png").size
    assert width > 3 * 120 and height > 80
    proc = cli(*base, "--blend", "layers", "--out", "x.png", cwd=tmp_path)
    assert (
        proc.returncode == 2
        and proc.stderr == "error: --blend layers applies to full-size outputs; add --full-size.\n"
    )


def test_demo_full_size(models):
    from sisgan.demo import DemoApp, RequestError, data_url

    app = DemoApp(models["mask"], "tiny")
    upload = photo(60, 44, seed=6)
    result = app.manipulate({"image": data_url(upload), "texts": [TEXT], "full_size": True})

    def decode(url: str) -> np.ndarray:
        import base64

        return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))

    assert (decode(result["source"]) == np.asarray(upload)).all()
    assert decode(result["outputs"][0]["image"]).shape == (44, 60, 3)
    assert decode(
        app.manipulate({"image": data_url(upload), "texts": [TEXT]})["outputs"][0]["image"]
    ).shape == (
        IMAGE_SIZE,
        IMAGE_SIZE,
        3,
    )
    with pytest.raises(RequestError, match="'full_size' must be true or false"):
        app.manipulate({"image": data_url(upload), "texts": [TEXT], "full_size": "yes"})
