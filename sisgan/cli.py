"""The `sisgan` command: edit images by text with a trained model.

    sisgan manipulate --model models:/sisgan-synth-birds@champion --image bird.jpg \\
        --text "a bird with a red head" --text "a bird with blue wings" --out out.png [--grid] [--full-size]
    sisgan info --model models/
    sisgan demo --model models:/sisgan-synth-birds@champion      # a web page on http://127.0.0.1:8765/

Errors caused by the input (unreadable image, empty text, unknown model) are one `error: ...` line on
stderr and exit code 2. Only argparse is imported up front, so `sisgan --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from sisgan.inference import Manipulator

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line or input file: printed as one `error:` line."""


# Section: helpers.


def _quiet_mlflow() -> None:
    """MLflow's progress bars and INFO lines would bury the one line a user needs to read."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)  # database migrations on a fresh mlflow.db


def output_paths(out: Path, n: int, grid: bool) -> list[Path]:
    """One file per text (out-1.png, out-2.png, ... when several), or the single grid file."""
    if grid or n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, n + 1)]


def _check_out(out: Path, n: int, grid: bool) -> dict[Path, str]:
    """Refuse an --out that cannot be written before any work; returns {output file: Pillow format}."""
    from PIL import Image

    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name like {out / 'out.png'}.")
    if not out.suffix:
        raise UsageError(f"--out {out} has no image extension; give a file name like {out}.png.")
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"--out {out}: unknown image extension {out.suffix!r}; use .png, .jpg or .webp.")
    paths = output_paths(out, n, grid)
    for path in paths:
        if path.is_dir():
            raise UsageError(f"--out {out}: {path} is a folder; choose another --out.")
    _check_folder(out)
    return dict.fromkeys(paths, fmt)


def _check_folder(out: Path) -> None:
    """The output's folder exists (or can be created) and accepts a new file."""
    import tempfile

    folder = out.parent.absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is a file, not a folder; choose another --out.")
    try:
        # A real file, not os.access: access() says yes to root on a read-only disk.
        with tempfile.TemporaryFile(dir=existing, prefix=".sisgan-write-check-"):
            pass
    except OSError as e:
        raise UsageError(
            f"--out {out}: cannot write in {existing} ({e.strerror or e}); choose another --out."
        ) from None


def _load(model: str, device: str) -> Manipulator:
    from sisgan.config import resolve_device
    from sisgan.errors import ConfigError
    from sisgan.inference import Manipulator

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise ConfigError(f"--device {device!r}: use cpu, cuda, cuda:N or auto.")
    device = resolve_device(device)
    if "://" in model or model.startswith(("models:/", "runs:/")):
        _quiet_mlflow()
    return Manipulator.load(model, device=device)


def _warn_unknown(fn: Callable[[], Any]) -> Any:
    """Run fn; what the model did not read of a text becomes one `warning:` line each, others pass through."""
    from sisgan.inference import TextWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TextWarning)
        result = fn()
    for w in caught:
        if issubclass(w.category, TextWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return result


def _source_tile(m: Manipulator, image: Image.Image) -> Any:
    """The source as the model sees it (centre square, resized, cropped): [S, S, 3] uint8."""
    return m.source(image)


# Section: commands.


def cmd_manipulate(args: argparse.Namespace) -> None:
    out = Path(args.out)
    # Everything the user can get wrong is checked before the model loads (seconds) and runs.
    formats = _check_out(out, len(args.text), args.grid)
    for t in args.text:  # before loading the model: an empty text is the cheapest error to report
        if not t.strip():
            raise UsageError("--text is empty; describe the target, e.g. 'a bird with a red head'.")
    if args.blend != "change" and not args.full_size:
        raise UsageError(f"--blend {args.blend} applies to full-size outputs; add --full-size.")
    source = _open_image(args.image, args.max_pixels)
    m = _load(args.model, args.device)
    sources = [source] * len(args.text)
    results = _warn_unknown(lambda: m.manipulate_batch(sources, args.text, args.full_size, args.blend))
    if args.grid:
        import numpy as np

        from sisgan.eval.grids import compose

        if args.full_size:  # the photo beside its edits, at its own size
            scale, first = args.scale or 1, np.asarray(source)
        else:  # ~100 px tiles keep captions readable
            scale, first = args.scale or max(1, round(100 / m.image_size)), _source_tile(m, source)
        tiles = [first, *(np.asarray(r) for r in results)]
        images = [compose([tiles], ["source", *args.text], scale=scale, header_lines=6)]
    else:
        images = [_scaled(r, args.scale) for r in results]
    for (path, fmt), image in zip(formats.items(), images, strict=True):
        _save(image, path, fmt, out)
        print(path)


def _open_image(path: str, max_pixels: int | None) -> Image.Image:
    from PIL import Image as PILImage

    from sisgan.inference import DEFAULT_MAX_PIXELS, ImageTooLargeError, load_image

    try:
        return load_image(Path(path), max_pixels or DEFAULT_MAX_PIXELS)
    except ImageTooLargeError as e:
        raise UsageError(e.describe("--max-pixels")) from None
    except PILImage.DecompressionBombError as e:  # not among the errors load_image turns into DataError
        raise UsageError(f"--image {path} is too large to decode safely ({e}).") from None


def _scaled(image: Image.Image, scale: int | None) -> Image.Image:
    from PIL import Image as PILImage

    if not scale:
        return image
    return image.resize((image.width * scale, image.height * scale), PILImage.Resampling.NEAREST)  # crisp


def _save(image: Image.Image, path: Path, fmt: str, out: Path) -> None:
    """Write under a temporary name and rename: a failed write leaves nothing, not a zero-byte image."""
    from sisgan.io import atomic_write

    try:
        atomic_write(path, lambda tmp: image.save(tmp, format=fmt))
    except OSError as e:
        raise UsageError(
            f"--out {out}: cannot write {path} ({e.strerror or e}); no partial file was left."
        ) from None


def cmd_info(args: argparse.Namespace) -> None:
    m = _load(args.model, args.device)
    print(json.dumps({"model": args.model, **m.info()}, indent=2))


def _default_examples(model: str) -> Path | None:
    """data/shards/<dataset> of the project in the current folder, for a model named sisgan-<dataset>."""
    shards = Path("data/shards")
    match = re.search(r"sisgan-([\w.-]+?)(?:[@/]|$)", model)
    names = [match.group(1)] if match else []
    if Path("params.yaml").is_file():
        import yaml

        dataset = (yaml.safe_load(Path("params.yaml").read_text()) or {}).get("dataset")
        names += [dataset] if isinstance(dataset, str) else []
    found = [shards / n for n in names if (shards / n / "manifest.json").is_file()]
    return found[0] if found else None


def cmd_demo(args: argparse.Namespace) -> None:
    from sisgan.demo import DemoApp, load_examples, make_server

    folder = Path(args.examples) if args.examples else _default_examples(args.model)
    examples = load_examples(folder, args.n_examples) if folder else []
    m = _load(args.model, args.device)
    try:
        server = make_server(DemoApp(m, args.model, examples), args.host, args.port)
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); try --port 0.") from None
    host, port = server.server_address[:2]
    where = f"{len(examples)} example images from {folder}" if examples else "no example images (--examples)"
    print(f"sisgan demo: {args.model} with {where}", file=sys.stderr)
    print(f"serving on http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


# Section: argument parsing.


def build_parser() -> argparse.ArgumentParser:
    from sisgan import __version__

    parser = argparse.ArgumentParser(prog="sisgan", description="Text-guided image manipulation (SISGAN).")
    parser.add_argument("--version", action="version", version=f"sisgan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    model_help = "models:/<name>@<alias>, runs:/<id>/model, a bundle folder or the project's models/ folder"
    p = sub.add_parser("manipulate", help="edit an image so that it matches a text")
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--image", required=True, help="source image (JPEG, PNG, WebP; any size and mode)")
    p.add_argument("--text", required=True, action="append", help="target description; repeat for several")
    p.add_argument("--out", required=True, help="output file; several texts give out-1.png, out-2.png, ...")
    p.add_argument("--grid", action="store_true", help="one file: the source and every output side by side")
    p.add_argument(
        "--full-size",
        action="store_true",
        help="return the photo at its own size, edited where the model saw it (its centre square) and "
        "untouched elsewhere (default: the model's S x S output)",
    )
    p.add_argument(
        "--blend",
        choices=("change", "layers"),
        default="change",
        help="with --full-size, how the model-size edit is applied: change (output - source, upsampled; "
        "default) or layers (mask and repaint, upsampled; mask/paint models)",
    )
    p.add_argument(
        "--scale",
        type=_positive,
        default=None,
        help="upscale by this factor (nearest); grid default: ~100 px tiles",
    )
    p.add_argument(
        "--max-pixels",
        type=_positive,
        default=None,
        help="refuse larger source images before decoding them (default: 50,000,000 pixels)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.set_defaults(func=cmd_manipulate)

    p = sub.add_parser("info", help="print a model's image size, width and vocabulary size")
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="try a model in the browser: a local web page")
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument(
        "--examples",
        default=None,
        help="test images to choose from: a folder of images or data/shards/<dataset> "
        "(default: the project's shards of the model's dataset, when present)",
    )
    p.add_argument("--n-examples", type=_positive, default=12, help="how many example images (default 12)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.set_defaults(func=cmd_demo)
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from sisgan.errors import SisganError

    try:
        args.func(args)
    except (SisganError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
