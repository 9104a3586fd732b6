"""A local web page to try a model: `sisgan demo --model models:/sisgan-synth-birds@champion`.

The page (demo_page.html, self-contained: it loads nothing from another host) lets a user upload an image or
pick a test image, type one or more target descriptions and see each output beside the source, with
download links and the words the model does not know. The server is the standard library's http.server,
bound to 127.0.0.1 by default:

    GET  /                  the page
    GET  /api/info          the model's sizes, the example images' names, caption suggestions, limits
    GET  /examples/<i>.png  example image i
    POST /api/manipulate    {"image": <data URL or base64> | "example": <i>, "texts": [...],
                             "full_size": false (default) | true}
                            -> {"source", "outputs": [{"text", "image", "unknown"}], "grid"} (PNG data URLs;
                               with full_size the source is the whole photo and each output the photo at its
                               own size, edited where the model saw it)

A bad request is answered 4xx with {"error": <one sentence>}, which the page shows.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import logging
import threading
import warnings
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from sisgan.errors import DataError, SisganError

if TYPE_CHECKING:
    from sisgan.inference import Manipulator

_logger = logging.getLogger(__name__)

MAX_BODY = 20 * 1024 * 1024  # bytes of one request: an upload is sent base64-encoded inside JSON
MAX_TEXTS = 8
MAX_CHARS = 300
N_EXAMPLES = 12
N_SUGGESTIONS = 6  # captions offered as one-click targets
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class RequestError(Exception):
    """A request the page can fix: answered with its status and the message shown to the user."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    png: bytes
    captions: tuple[str, ...] = ()


# Section: example images.


def _png(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def load_examples(folder: str | Path, n: int = N_EXAMPLES) -> list[Example]:
    """Up to n example images from a shard folder (its test split, spread evenly) or a folder of images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"examples {folder}: no such folder; pass a folder of images or a shard folder.")
    if (folder / "manifest.json").is_file():
        from sisgan.data.shards import load_split

        test = load_split(folder, "test")
        picks = np.unique(np.linspace(0, len(test) - 1, min(n, len(test))).round().astype(int))
        return [Example(test.image_ids[i], _png(test.images[i]), tuple(test.captions[i])) for i in picks]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(
            f"examples {folder} holds no .png/.jpg/.webp files and no manifest.json; "
            "pass a folder of images or data/shards/<dataset>."
        )
    return [Example(p.name, p.read_bytes()) for p in files[:n]]


# Section: the application (no HTTP in here: tested directly).


def data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(image)).decode("ascii")


def decode_upload(value: Any) -> bytes:
    """The bytes of an uploaded image sent as a data URL (what FileReader gives) or plain base64."""
    if not isinstance(value, str) or not value.strip():
        raise RequestError("'image' must be an image file encoded as a data URL or base64.")
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("the uploaded image is not valid base64; upload the file again.") from None


class DemoApp:
    """What the page talks to: a loaded model, the example images and the request checks."""

    def __init__(self, manipulator: Manipulator, name: str, examples: Sequence[Example] = ()) -> None:
        self.manipulator = manipulator
        self.name = name
        self.examples = list(examples)
        self._lock = threading.Lock()  # one generator call at a time: requests arrive on several threads

    def page(self) -> bytes:
        return resources.files("sisgan").joinpath("demo_page.html").read_bytes()

    def info(self) -> dict[str, Any]:
        captions = dict.fromkeys(ex.captions[0] for ex in self.examples if ex.captions)  # unique, in order
        suggestions = list(captions)[:N_SUGGESTIONS]
        return {
            "name": self.name,
            "model": self.manipulator.info(),
            "examples": [{"name": ex.name} for ex in self.examples],
            "suggestions": suggestions,
            "limits": {"max_texts": MAX_TEXTS, "max_chars": MAX_CHARS},
        }

    def example_png(self, index: int) -> bytes:
        if not 0 <= index < len(self.examples):
            raise RequestError(f"no example image {index}.", HTTPStatus.NOT_FOUND)
        return self.examples[index].png

    def _texts(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise RequestError("'texts' must be a list of sentences.")
        texts = [t.strip() for t in value if t.strip()]
        if not texts:
            raise RequestError("type at least one description, e.g. 'a bird with a red head'.")
        if len(texts) > MAX_TEXTS:
            raise RequestError(f"{len(texts)} sentences: at most {MAX_TEXTS} at once.")
        long = [t for t in texts if len(t) > MAX_CHARS]
        if long:
            raise RequestError(f"a sentence has {len(long[0])} characters; keep each under {MAX_CHARS}.")
        return texts

    def _source(self, request: Mapping[str, Any]) -> Image.Image:
        from sisgan.inference import load_image

        if "example" in request:
            index = request["example"]
            if isinstance(index, bool) or not isinstance(index, int):
                raise RequestError("'example' must be the number of an example image.")
            data = self.example_png(index)
        elif "image" in request:
            data = decode_upload(request["image"])
        else:
            raise RequestError("choose a test image or upload one first.")
        try:
            return load_image(data)
        except (SisganError, Image.DecompressionBombError) as e:
            raise RequestError(str(e)) from None

    def source_tile(self, image: Image.Image) -> np.ndarray:
        """The source as the model sees it (centre square, resized, cropped): [S, S, 3] uint8."""
        return self.manipulator.source(image)

    def manipulate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from sisgan.eval.grids import compose
        from sisgan.inference import UnknownWordsWarning

        if not isinstance(request, Mapping):
            raise RequestError("the request must be a JSON object.")
        texts = self._texts(request.get("texts"))
        full_size = request.get("full_size", False)
        if not isinstance(full_size, bool):
            raise RequestError("'full_size' must be true or false.")
        image = self._source(request)
        vocab = self.manipulator.text_model.vocab
        unknown = [sorted(set(vocab.unknown_words(t))) for t in texts]  # shown per output on the page
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", UnknownWordsWarning)
            try:
                outputs = self.manipulator.manipulate_batch([image] * len(texts), texts, full_size)
            except SisganError as e:
                raise RequestError(str(e)) from None
            tile = np.asarray(image) if full_size else self.source_tile(image)
        scale = 1 if full_size else max(1, round(100 / self.manipulator.image_size))
        grid = compose([[tile, *(np.asarray(o) for o in outputs)]], ["source", *texts], scale, header_lines=6)
        return {
            "source": data_url(Image.fromarray(tile)),
            "outputs": [
                {"text": t, "image": data_url(o), "unknown": u}
                for t, o, u in zip(texts, outputs, unknown, strict=True)
            ],
            "grid": data_url(grid),
        }


# Section: HTTP.


def _handler(app: DemoApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sisgan-demo"

        def log_message(self, format: str, *args: Any) -> None:
            _logger.debug("%s " + format, self.address_string(), *args)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _guard(self, fn: Any) -> None:
            try:
                fn()
            except RequestError as e:
                self._json({"error": str(e)}, e.status)
            except Exception as e:  # the page must show something: never a dropped connection
                _logger.exception("demo request failed")
                message = f"internal error ({type(e).__name__}: {e}); see the server's log."
                self._json({"error": message}, HTTPStatus.INTERNAL_SERVER_ERROR)

        def do_GET(self) -> None:  # http.server's method names
            self._guard(self._get)

        def do_POST(self) -> None:
            self._guard(self._post)

        def _get(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, app.page(), "text/html; charset=utf-8")
            elif path == "/api/info":
                self._json(app.info())
            elif path.startswith("/examples/") and path.endswith(".png") and path[10:-4].isdigit():
                self._send(HTTPStatus.OK, app.example_png(int(path[10:-4])), "image/png")
            else:
                raise RequestError(f"no page {path}", HTTPStatus.NOT_FOUND)

        def _post(self) -> None:
            if self.path != "/api/manipulate":
                raise RequestError(f"no endpoint {self.path}", HTTPStatus.NOT_FOUND)
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():
                raise RequestError("the request has no Content-Length.", HTTPStatus.LENGTH_REQUIRED)
            if int(length) > MAX_BODY:
                self.close_connection = True  # the unread body must not be parsed as the next request
                limit = MAX_BODY * 3 // 4 // 2**20  # base64 makes an upload a third larger
                raise RequestError(
                    f"the request is {int(length) / 2**20:.0f} MB; upload an image under {limit} MB.",
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                )
            try:
                request = json.loads(self.rfile.read(int(length)))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise RequestError("the request is not valid JSON.") from None
            self._json(app.manipulate(request))

    return Handler


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server for the page, bound but not yet serving (port 0: any free port; see server_address)."""
    server = ThreadingHTTPServer((host, port), _handler(app))
    server.daemon_threads = True
    return server


__all__ = ["DemoApp", "Example", "RequestError", "decode_upload", "load_examples", "make_server"]
