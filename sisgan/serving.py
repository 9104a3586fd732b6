"""SISGAN as an MLflow pyfunc model: what `mlflow models serve -m models:/sisgan-<dataset>@champion` runs.

Request records are `{"image": <base64 PNG/JPEG/WebP>, "text": <target description>}`; each answer row is
`{"image": <base64 PNG>, "warnings": [...]}`, the warnings saying what of the text the model did not read
(unknown words, emoji or other characters it cannot read, words past text.max_words; [] when none).
Images over $SISGAN_MAX_PIXELS pixels (default 50,000,000) are refused from their header, undecoded.

Outputs are the model's size (S x S) unless the request's params say `"full_size": true`: then each answer is
the photo at its own size, edited where the model saw it (`sisgan.compositing`; `"blend": "change"` or
`"layers"`). With the scoring server: `{"dataframe_records": [...], "params": {"full_size": true}}`.

The model's artefact is a bundle folder (see `sisgan.inference`), so the same
registered version also loads with `sisgan.Manipulator.load("models:/...")` and `sisgan manipulate`.

Bad requests raise `MlflowException(INVALID_PARAMETER_VALUE)`: the scoring server turns that into a 400
with the message and keeps serving (any other exception would also be a 400, but with a generic message).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import Array
from PIL import Image

from sisgan.errors import SisganError

if TYPE_CHECKING:
    from sisgan.compositing import Blend

_logger = logging.getLogger(__name__)

BUNDLE_KEY = "bundle"  # the artefact key; MLflow stores the folder under artifacts/<folder name>/
DEVICE_ENV = "SISGAN_SERVING_DEVICE"  # auto | cpu | cuda[:N]; the server's device
MAX_PIXELS_ENV = "SISGAN_MAX_PIXELS"  # the largest image (width x height) a request may send
MAX_BATCH = 64  # rows per generator call, so one large request cannot exhaust memory
# What the model needs at load time; pinned to the versions it was logged with (no inference: 3 s/model).
REQUIREMENTS = ("mlflow", "torch", "torchvision", "numpy", "pandas", "pillow", "cloudpickle")

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(DataType.string, "image"), ColSpec(DataType.string, "text")]),
    outputs=Schema([ColSpec(DataType.string, "image"), ColSpec(Array(DataType.string), "warnings")]),
    params=ParamSchema(
        [ParamSpec("full_size", DataType.boolean, False), ParamSpec("blend", DataType.string, "change")]
    ),
)


def _bad_request(message: str) -> MlflowException:
    return MlflowException.invalid_parameter_value(message)


# Section: encoding.


def encode_png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_image_field(value: Any, row: int) -> bytes:
    """The bytes of a base64 image field; a `data:image/...;base64,` prefix and line breaks are accepted."""
    if not isinstance(value, str) or not value.strip():
        raise _bad_request(
            f"row {row}: 'image' must be a non-empty base64 string (a PNG, JPEG or WebP file)."
        )
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        # `base64` without -w0 wraps lines: whitespace is not an error, any other non-alphabet character is.
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise _bad_request(
            f"row {row}: 'image' is not valid base64 ({e}); send base64 of the image file."
        ) from None


def max_pixels_from_env() -> int:
    """$SISGAN_MAX_PIXELS as a positive integer (the default when unset)."""
    from sisgan.errors import ConfigError
    from sisgan.inference import DEFAULT_MAX_PIXELS

    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_PIXELS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={raw!r} must be a positive number of pixels, e.g. 50000000.")
    return int(raw)


def _rows(model_input: Any) -> pd.DataFrame:
    """The request as a DataFrame with `image` and `text` columns (a list of records is accepted too)."""
    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    missing = [c for c in ("image", "text") if c not in frame.columns]
    if missing:
        raise _bad_request(f"missing field(s) {missing}; each record needs 'image' (base64) and 'text'.")
    return frame


# Section: the model.


class SisganModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around `sisgan.Manipulator`; the manipulator is built in `load_context`."""

    def __init__(self) -> None:
        # Built from the bundle artefact at load time; never pickled with the model (weights stay files).
        self.manipulator: Any = None

    def load_context(self, context: Any) -> None:
        from sisgan.config import resolve_device
        from sisgan.inference import Manipulator

        device = resolve_device(os.environ.get(DEVICE_ENV, "auto"))
        bundle = context.artifacts[BUNDLE_KEY]
        self.manipulator = Manipulator.load(bundle, device=device, max_pixels=max_pixels_from_env())

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame = _rows(model_input)
        full_size, blend = self._options(params or {})
        texts = [self._text(v, i) for i, v in enumerate(frame["text"])]
        notes = [[message for _, message in self.manipulator.text_warnings(t)] for t in texts]
        out: list[str] = []
        # Images are decoded chunk by chunk: a large request never holds all of them decoded at once.
        for start in range(0, len(frame), MAX_BATCH):
            rows = range(start, min(start + MAX_BATCH, len(frame)))
            images = [self._image(frame["image"].iat[i], i) for i in rows]
            edited = self._manipulate(images, texts[start : rows.stop], full_size, blend)
            out += [encode_png(im) for im in edited]
        return pd.DataFrame({"image": out, "warnings": notes})

    def _options(self, params: dict[str, Any]) -> tuple[bool, Blend]:
        """(full_size, blend) from the request's params, checked against the model."""
        full_size, blend = params.get("full_size", False), params.get("blend", "change")
        if not isinstance(full_size, bool):
            raise _bad_request(f"params: 'full_size' must be true or false, got {full_size!r}.")
        if full_size:
            try:
                self.manipulator.check_blend(blend)
            except SisganError as e:
                raise _bad_request(f"params: {e}") from None
        return full_size, cast("Blend", blend)

    @staticmethod
    def _text(value: Any, row: int) -> str:
        if not isinstance(value, str):
            value = value.item() if hasattr(value, "item") else value  # numpy scalars from the DataFrame
            shown = "null" if value is None or value != value else repr(value)  # NaN: a missing field
            raise _bad_request(
                f"row {row}: 'text' must be a string (the target description), got {shown}; "
                'send e.g. "a bird with a red head".'
            )
        if not value.strip():
            raise _bad_request(
                f"row {row}: 'text' is empty; describe the target, e.g. 'a bird with a red head'."
            )
        return value

    def _image(self, value: Any, row: int) -> Image.Image:
        from sisgan.inference import ImageTooLargeError, load_image

        data = decode_image_field(value, row)
        try:
            return load_image(data, self.manipulator.max_pixels)
        except ImageTooLargeError as e:
            raise _bad_request(f"row {row}: {e.describe(f'the server setting {MAX_PIXELS_ENV}')}") from None
        except (SisganError, Image.DecompressionBombError) as e:
            raise _bad_request(f"row {row}: {e}") from None

    def _manipulate(
        self,
        images: Sequence[Image.Image],
        texts: Sequence[str],
        full_size: bool = False,
        blend: Blend = "change",
    ) -> list[Image.Image]:
        from sisgan.inference import TextWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TextWarning)
            try:
                result = self.manipulator.manipulate_batch(images, texts, full_size, blend)
            except SisganError as e:  # any other problem with the client's input
                raise _bad_request(str(e)) from None
        for w in caught:  # the answer's `warnings` say the same; the log keeps them for the operator
            _logger.warning("%s", w.message)
        return result


# Section: logging.


def pip_requirements() -> list[str]:
    """`pkg==version` for what the model imports at load, as installed here."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def input_example(bundle_dir: str | Path, text: str | None = None) -> pd.DataFrame:
    """One record: a plain grey-blue image of the model's size and a caption made of known words."""
    from sisgan.inference import Manipulator

    m = Manipulator.load(bundle_dir)
    if text is None:
        words = [w for w in m.text_model.vocab.words[2:] if w.isalpha()][:6]  # skip <pad>, <unk>
        text = " ".join(words) or "a bird"
    image = Image.new("RGB", (m.load_size, m.load_size), (90, 120, 160))
    return pd.DataFrame({"image": [encode_png(image)], "text": [text]})


def _package_copy(dest: Path) -> Path:
    """A clean copy of the sisgan package (no __pycache__) to ship with the model as code."""
    import sisgan

    target = dest / "sisgan"
    shutil.copytree(
        Path(sisgan.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return target


def log_pyfunc(
    bundle_dir: str | Path,
    name: str = "model",
    example_text: str | None = None,
    model_metadata: dict[str, Any] | None = None,
) -> ModelInfo:
    """Log a bundle folder as a pyfunc model in the active run (or a new one); returns its ModelInfo.

    The sisgan package is shipped as code so the model loads wherever mlflow, torch and Pillow are
    installed, with or without sisgan itself. MLflow warns about pickling `python_model`; the pickle here
    names the class only (~200 bytes: no weights, no embedded source), the weights are the bundle files.
    """
    bundle_dir = Path(bundle_dir)
    with tempfile.TemporaryDirectory() as tmp:
        code = _package_copy(Path(tmp))
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=SisganModel(),
            artifacts={BUNDLE_KEY: str(bundle_dir)},
            code_paths=[str(code)],
            pip_requirements=pip_requirements(),
            signature=SIGNATURE,
            input_example=input_example(bundle_dir, example_text),
            metadata=model_metadata,
        )


__all__ = ["SIGNATURE", "SisganModel", "decode_image_field", "encode_png", "log_pyfunc", "pip_requirements"]
