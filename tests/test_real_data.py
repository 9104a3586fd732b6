"""CUB-200-2011 and Oxford-102 on miniature archives in the exact published layouts.

The archives are written here (tgz trees, imagelabels.mat via scipy, the Reed caption tarballs) and served
by a local HTTP server on 127.0.0.1, so the download -> extract -> preprocess path runs as it would on the
real files. Each test passes its own archive specs; the published ones in sisgan.data.real stay untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data
from PIL import Image

from sisgan.config import DataConfig
from sisgan.data import download as dl
from sisgan.data import real, sources
from sisgan.data.extract import UnsafeArchiveError, extract
from sisgan.data.shards import build_shards, load_split
from sisgan.errors import ConfigError, DataError

FAST = dl.FetchOptions(backoff=0.0, progress=False, read_timeout=10)


# Section: a local HTTP server with Range support and scripted failures.


@dataclasses.dataclass
class Server:
    base: str = ""
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # request path (with query) -> body
    pages: dict[str, str] = dataclasses.field(default_factory=dict)  # request path -> HTML body
    fail: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # path -> statuses answered first
    drop_after: dict[str, int] = dataclasses.field(default_factory=dict)  # path -> bytes before a cut (once)
    ignore_range: set[str] = dataclasses.field(default_factory=set)
    log: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)  # (path, Range header)
    sent: int = 0  # body bytes written, all requests

    def url(self, path: str) -> str:
        return self.base + path


def _handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _reply(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            state.sent += len(body)  # counted before writing: the client may finish reading first
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            path, rng = self.path, self.headers.get("Range")
            state.log.append((path, rng))
            if state.fail.get(path):
                self._reply(state.fail[path].pop(0), b"busy", "text/plain")
            elif path in state.pages:
                self._reply(200, state.pages[path].encode(), "text/html; charset=utf-8")
            elif path not in state.files:
                self._reply(404, b"not found", "text/plain")
            else:
                self._file(path, state.files[path], rng)

        def _file(self, path: str, data: bytes, rng: str | None) -> None:
            start = (
                int(rng.removeprefix("bytes=").rstrip("-")) if rng and path not in state.ignore_range else 0
            )
            if start >= len(data) > 0:
                self._reply(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206 if start else 200
            extra = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
            body = data[start:]
            if path in state.drop_after:
                # Promise the whole body, send part of it, then cut the connection.
                cut = state.drop_after.pop(path)
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                state.sent += cut
                self.wfile.write(body[:cut])
                self.close_connection = True
                return
            self._reply(status, body, "application/octet-stream", extra)

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


# Section: miniature archives in the published layouts.


def _jpeg(colour: tuple[int, int, int], mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> bytes:
    im = Image.new("RGB", size, colour)
    if mode == "L":
        im = im.convert("L")
    elif mode == "CMYK":
        im = im.convert("CMYK")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _tgz(members: dict[str, bytes | None]) -> bytes:
    """A gzipped tar; a None value is a directory member."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _captions(stem: str) -> bytes:
    return "".join(f"{stem} caption {j}: this bird has a short beak.\n" for j in range(10)).encode()


def _reed_tgz(top: str, classes: list[str], test: list[str], files: dict[str, list[str]]) -> bytes:
    """A Reed cvpr2016 caption tarball: class lists, text_c10/<class>/<stem>.txt, and binaries not needed."""
    trainval = [c for c in classes if c not in test]
    members: dict[str, bytes | None] = {f"{top}/": None, f"{top}/text_c10/": None}
    for name, lst in {
        "allclasses": classes,
        "trainvalclasses": trainval,
        "trainclasses": trainval[:-1],
        "valclasses": trainval[-1:],
        "testclasses": test,
    }.items():
        members[f"{top}/{name}.txt"] = "".join(f"{c}\n" for c in lst).encode()
    for cls in classes:
        members[f"{top}/text_c10/{cls}/"] = None
        for stem in files.get(cls, []):
            members[f"{top}/text_c10/{cls}/{stem}.txt"] = _captions(stem)
        members[f"{top}/images/{cls}.t7"] = b"\x00torch7 features"  # present in the real tarball, not read
    return _tgz(members)


CUB_CLASSES = [
    "001.Black_footed_Albatross",
    "002.Laysan_Albatross",
    "003.Sooty_Albatross",
    "004.Groove_billed_Ani",
]
CUB_TEST = ["004.Groove_billed_Ani"]
GREY, CMYK_RED = (128, 128, 128), (220, 20, 20)


def _cub_stems() -> dict[str, list[str]]:
    return {
        cls: [f"{cls.split('.')[1]}_{k:04d}_{7000 + 10 * i + k}" for k in (1, 2)]
        for i, cls in enumerate(CUB_CLASSES)
    }


@dataclasses.dataclass(frozen=True)
class Mini:
    """Miniature archives of one dataset: {file name: bytes}, plus facts the tests check."""

    files: dict[str, bytes]
    grey: str  # image ids stored as grayscale and CMYK JPEGs
    cmyk: str
    no_caption: str  # image id whose caption file is left out
    counts: dict[str, int]  # listed images per split (before the caption-less one is rejected)


def mini_cub() -> Mini:
    stems = _cub_stems()
    tree: dict[str, bytes | None] = {
        "CUB_200_2011/": None,
        "CUB_200_2011/images/": None,
        "CUB_200_2011/attributes/": None,
        "CUB_200_2011/attributes/image_attribute_labels.txt": b"1 1 0 3 27.7\n",
        "CUB_200_2011/README": b"CUB-200-2011 miniature\n",
    }
    images, labels, split = [], [], []
    grey, cmyk = stems[CUB_CLASSES[0]][0], stems[CUB_CLASSES[0]][1]
    number = 0
    for c, cls in enumerate(CUB_CLASSES, 1):
        tree[f"CUB_200_2011/images/{cls}/"] = None
        for stem in stems[cls]:
            number += 1
            mode = "L" if stem == grey else "CMYK" if stem == cmyk else "RGB"
            colour = GREY if mode == "L" else CMYK_RED if mode == "CMYK" else (20 * number, 200, 30)
            tree[f"CUB_200_2011/images/{cls}/{stem}.jpg"] = _jpeg(colour, mode)
            images.append(f"{number} {cls}/{stem}.jpg\n")
            labels.append(f"{number} {c}\n")
            split.append(f"{number} {number % 2}\n")
    # Some copies hold stray *_rgb.jpg files that images.txt does not list: never indexed.
    tree[f"CUB_200_2011/images/{CUB_CLASSES[0]}/{grey}_rgb.jpg"] = _jpeg((0, 0, 255))
    tree["CUB_200_2011/images.txt"] = "".join(images).encode()
    tree["CUB_200_2011/classes.txt"] = "".join(f"{i} {c}\n" for i, c in enumerate(CUB_CLASSES, 1)).encode()
    tree["CUB_200_2011/image_class_labels.txt"] = "".join(labels).encode()
    tree["CUB_200_2011/train_test_split.txt"] = "".join(split).encode()
    tree["attributes.txt"] = b"1 has_bill_shape::curved_(up_or_down)\n"
    no_caption = stems[CUB_CLASSES[1]][1]
    captioned = {cls: [s for s in ss if s != no_caption] for cls, ss in stems.items()}
    return Mini(
        files={
            "CUB_200_2011.tgz": _tgz(tree),
            "cvpr2016_cub.tar.gz": _reed_tgz("cvpr2016_cub", CUB_CLASSES, CUB_TEST, captioned),
        },
        grey=grey,
        cmyk=cmyk,
        no_caption=no_caption,
        counts={"train": 6, "test": 2},
    )


FLOWER_LABELS = [3, 1, 2, 1, 3, 2, 2]  # image_00001 is class 3: numbers are not class-ordered


def mini_flowers() -> Mini:
    import scipy.io

    tree: dict[str, bytes | None] = {"jpg/": None}
    files: dict[str, list[str]] = {}
    for number, label in enumerate(FLOWER_LABELS, 1):
        stem = f"image_{number:05d}"
        mode = {1: "L", 2: "CMYK"}.get(number, "RGB")
        colour = GREY if mode == "L" else CMYK_RED if mode == "CMYK" else (30 * number, 90, 200)
        tree[f"jpg/{stem}.jpg"] = _jpeg(colour, mode, (50, 36))
        if number != 6:
            files.setdefault(f"class_{label:05d}", []).append(stem)
    mat = io.BytesIO()
    scipy.io.savemat(mat, {"labels": np.array([FLOWER_LABELS], dtype=np.uint8)})
    classes = [f"class_{k:05d}" for k in (1, 2, 3)]
    return Mini(
        files={
            "102flowers.tgz": _tgz(tree),
            "imagelabels.mat": mat.getvalue(),
            "cvpr2016_flowers.tar.gz": _reed_tgz("cvpr2016_flowers", classes, ["class_00001"], files),
        },
        grey="image_00001",
        cmyk="image_00002",
        no_caption="image_00006",
        counts={"train": 5, "test": 2},
    )


MINIS = {"cub": mini_cub, "flowers": mini_flowers}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def spec_for(
    dataset: str, mini: Mini, urls: dict[str, tuple[str, ...]], checksums: bool = True
) -> real.DatasetSpec:
    """The published spec with the miniature's URLs, sizes and md5s (captions stay without a checksum)."""
    published = real.SPECS[dataset]
    parts = []
    for part in published.parts:
        a = part.archive
        data = mini.files[a.name]
        known = checksums and a.md5 is not None
        archive = dataclasses.replace(
            a, urls=urls[a.name], md5=_md5(data) if known else None, size=len(data) if known else None
        )
        parts.append(dataclasses.replace(part, archive=archive))
    return dataclasses.replace(published, parts=tuple(parts), expected=mini.counts)


def serve(server: Server, mini: Mini) -> dict[str, tuple[str, ...]]:
    for name, data in mini.files.items():
        server.files[f"/files/{name}"] = data
    return {name: (server.url(f"/files/{name}"),) for name in mini.files}


def data_cfg(tmp_path: Path, **kw: object) -> DataConfig:
    return DataConfig(root=str(tmp_path / "data"), load_size=16, workers=1, **kw)  # type: ignore[arg-type]


# Section: download -> extract -> preprocess.


def _preprocess(dataset: str, raw_dir: Path, data: DataConfig, out: Path) -> dict:
    items, extra = sources.source_items(dataset, raw_dir, data)
    return build_shards(
        items, out, dataset=dataset, load_size=data.load_size, workers=1, extra_manifest=extra, shard_rows=4
    )


def _image(shards: Path, image_id: str) -> np.ndarray:
    for split in ("train", "test"):
        data = load_split(shards, split)
        if image_id in data.image_ids:
            return data.images[data.image_ids.index(image_id)]
    raise AssertionError(f"{image_id} is in no split")


@pytest.mark.parametrize("dataset", ["cub", "flowers"])
def test_download_extract_preprocess(tmp_path, server, dataset):
    mini = MINIS[dataset]()
    spec = spec_for(dataset, mini, serve(server, mini))
    data = data_cfg(tmp_path)
    raw_dir = tmp_path / "data/raw" / dataset

    info = real.download(dataset, data, raw_dir, spec=spec, options=FAST)
    assert info["images"] == sum(mini.counts.values()) and info["published"]
    seen = {a["name"]: a for a in info["archives"]}
    assert all(seen[n]["md5"] == _md5(b) and seen[n]["size"] == len(b) for n, b in mini.files.items())
    caption_archive = next(n for n in mini.files if n.startswith("cvpr2016"))
    assert seen[caption_archive]["verified"] is False  # no published checksum: recorded, not checked
    # Only what preprocessing reads is extracted.
    assert not list(raw_dir.rglob("*.t7")) and not list(raw_dir.rglob("image_attribute_labels.txt"))

    # A second download reuses the verified archives in the cache: no request at all.
    requests_before = len(server.log)
    again = real.download(dataset, data, raw_dir, spec=spec, options=FAST)
    assert len(server.log) == requests_before
    assert all(a["url"].startswith(server.base) for a in info["archives"])
    assert [a["md5"] for a in again["archives"]] == [a["md5"] for a in info["archives"]]

    manifest = _preprocess(dataset, raw_dir, data, tmp_path / "shards")
    rows = {s: manifest["splits"][s]["rows"] for s in ("train", "test")}
    expected_rows = dict(mini.counts)
    expected_rows["train"] -= 1  # the caption-less image (a training class in both miniatures)
    assert rows == expected_rows
    assert [r["image_id"] for r in manifest["rejected"]] == [mini.no_caption]
    assert "no captions" in manifest["rejected"][0]["reason"]
    assert len(manifest["captions_missing"]) == 1 and mini.no_caption in manifest["captions_missing"][0]
    assert manifest["split_check"].startswith("checked")
    assert manifest["source"]["archives"] == again["archives"]

    train = load_split(tmp_path / "shards", "train")
    for image_id, captions in zip(train.image_ids, train.captions, strict=True):
        assert len(captions) == 10 and all(c.startswith(f"{image_id} caption") for c in captions)
    assert not any(i.endswith("_rgb") for i in train.image_ids)
    grey = _image(tmp_path / "shards", mini.grey).astype(int)
    assert grey.shape == (16, 16, 3) and np.abs(grey - 128).max() <= 3
    red = _image(tmp_path / "shards", mini.cmyk).reshape(-1, 3).mean(0)
    assert np.abs(red - np.array(CMYK_RED)).max() < 12


def test_cub_and_flowers_classes_and_splits(tmp_path, server):
    for dataset in ("cub", "flowers"):
        mini = MINIS[dataset]()
        raw_dir = tmp_path / "data/raw" / dataset
        real.download(dataset, data_cfg(tmp_path), raw_dir, spec=spec_for(dataset, mini, serve(server, mini)))
        items, _ = sources.source_items(dataset, raw_dir, data_cfg(tmp_path))
        by_id = {i.image_id: i for i in items}
        if dataset == "cub":
            assert [i.split for i in items] == ["train"] * 6 + ["test"] * 2
            first = by_id[mini.grey]
            assert (first.class_id, first.class_name) == (0, CUB_CLASSES[0])
        else:
            # Labels come from imagelabels.mat, 1-based: image_00001 is class_00003 (class_id 2).
            assert [(by_id[f"image_{n:05d}"].class_id + 1) for n in range(1, 8)] == FLOWER_LABELS
            assert {i.image_id for i in items if i.split == "test"} == {"image_00002", "image_00004"}
            assert by_id["image_00001"].class_name == "class_00003"


# Section: the offline path (data.archives).


def test_archives_folder_needs_no_network(tmp_path):
    mini = mini_cub()
    folder = tmp_path / "archives"
    folder.mkdir()
    for name, data in mini.files.items():
        (folder / name).write_bytes(data)
    dead = {name: ("http://127.0.0.1:9/unreachable",) for name in mini.files}  # any request would fail
    spec = spec_for("cub", mini, dead)
    data = data_cfg(tmp_path, archives=str(folder))
    raw_dir = tmp_path / "data/raw/cub"

    info = real.download("cub", data, raw_dir, spec=spec, options=FAST)
    assert [a["path"] for a in info["archives"]] == [str((folder / n).resolve()) for n in mini.files]
    assert not (tmp_path / "data" / real.DOWNLOADS).exists()

    # A damaged archive in the folder: same verification, the user's file is left in place.
    bad = bytearray(mini.files["CUB_200_2011.tgz"])
    bad[100] ^= 0xFF
    (folder / "CUB_200_2011.tgz").write_bytes(bad)
    with pytest.raises(dl.ChecksumError) as err:
        real.download("cub", data, raw_dir, spec=spec, options=FAST)
    msg = str(err.value)
    assert "CUB_200_2011.tgz" in msg
    assert f"expected {_md5(mini.files['CUB_200_2011.tgz'])}, got {_md5(bytes(bad))}" in msg
    assert (folder / "CUB_200_2011.tgz").is_file() and (raw_dir / "source.json").is_file()

    (folder / "CUB_200_2011.tgz").write_bytes(mini.files["CUB_200_2011.tgz"])
    (folder / "cvpr2016_cub.tar.gz").unlink()
    with pytest.raises(DataError, match=r"has no cvpr2016_cub\.tar\.gz; get it from"):
        real.download("cub", data, raw_dir, spec=spec, options=FAST)


def test_missing_archives_folder_is_named(tmp_path):
    data = data_cfg(tmp_path, archives=str(tmp_path / "nothing-here"))
    with pytest.raises(DataError, match=r"^flowers: data\.archives = .* is not a folder"):
        real.download("flowers", data, tmp_path / "raw")


# Section: the downloader.


def _archive(server: Server, data: bytes, name: str = "blob.tgz", paths: tuple[str, ...] = ("/blob.tgz",)):
    for p in paths:
        server.files.setdefault(p, data)
    return dl.Archive(name, tuple(server.url(p) for p in paths), md5=_md5(data), size=len(data))


BLOB = np.random.default_rng(0).bytes(300_000)


def test_interrupted_download_is_resumed(tmp_path, server):
    archive = _archive(server, BLOB)
    server.drop_after["/blob.tgz"] = 100_000
    options = dl.FetchOptions(backoff=0.0, read_timeout=10)  # progress bar on
    path, seen = dl.fetch(archive, tmp_path, options)
    assert path.read_bytes() == BLOB and seen["md5"] == _md5(BLOB)
    # The chunk cut short by the drop is fetched again; every complete chunk before it is kept.
    kept = 100_000 // options.chunk_bytes * options.chunk_bytes
    assert kept > 0 and server.log == [("/blob.tgz", None), ("/blob.tgz", f"bytes={kept}-")]
    assert server.sent == len(BLOB) + 100_000 - kept
    assert not (tmp_path / "blob.tgz.part").exists()


def test_partial_file_of_an_earlier_run_is_resumed(tmp_path, server):
    archive = _archive(server, BLOB)
    (tmp_path / "blob.tgz.part").write_bytes(BLOB[:123_456])
    path, _ = dl.fetch(archive, tmp_path, FAST)
    assert path.read_bytes() == BLOB and server.log == [("/blob.tgz", "bytes=123456-")]


def test_server_ignoring_range_restarts_from_zero(tmp_path, server):
    archive = _archive(server, BLOB)
    server.ignore_range.add("/blob.tgz")
    (tmp_path / "blob.tgz.part").write_bytes(BLOB[:1000])
    path, _ = dl.fetch(archive, tmp_path, FAST)
    assert path.read_bytes() == BLOB


def test_transient_errors_back_off_then_succeed(tmp_path, server, monkeypatch):
    delays: list[float] = []
    monkeypatch.setattr(dl.time, "sleep", delays.append)
    archive = _archive(server, BLOB)
    server.fail["/blob.tgz"] = [503, 502, 429]
    path, _ = dl.fetch(archive, tmp_path, dl.FetchOptions(backoff=0.5, progress=False))
    assert path.read_bytes() == BLOB
    assert delays == [0.5, 1.0, 2.0] and len(server.log) == 4


def test_dead_url_falls_through_to_the_mirror(tmp_path, server):
    archive = _archive(server, BLOB, paths=("/gone.tgz", "/mirror/blob.tgz"))
    del server.files["/gone.tgz"]
    path, seen = dl.fetch(archive, tmp_path, FAST)
    assert path.read_bytes() == BLOB and seen["url"].endswith("/mirror/blob.tgz")
    assert [p for p, _ in server.log] == ["/gone.tgz", "/mirror/blob.tgz"]  # a 404 is not retried


def test_retries_give_up_with_a_clear_error(tmp_path, server):
    archive = _archive(server, BLOB)
    server.fail["/blob.tgz"] = [503] * 10
    with pytest.raises(DataError, match=r"could not download blob\.tgz .*503.*set data\.archives"):
        dl.fetch(archive, tmp_path, dl.FetchOptions(retries=3, backoff=0.0, progress=False))
    assert len(server.log) == 3


@pytest.mark.parametrize("wrong", ["md5", "size"])
def test_wrong_checksum_is_rejected_and_nothing_is_left(tmp_path, server, wrong):
    mini = mini_cub()
    spec = spec_for("cub", mini, serve(server, mini))
    images = spec.parts[0].archive
    bad = {"md5": {"md5": "0" * 32}, "size": {"size": images.size + 1}}[wrong]
    spec = dataclasses.replace(
        spec,
        parts=(
            dataclasses.replace(spec.parts[0], archive=dataclasses.replace(images, **bad)),
            *spec.parts[1:],
        ),
    )
    raw_dir = tmp_path / "data/raw/cub"
    with pytest.raises(DataError) as err:
        real.download("cub", data_cfg(tmp_path), raw_dir, spec=spec, options=FAST)
    msg = str(err.value)
    assert "CUB_200_2011.tgz" in msg and "deleted" in msg
    if wrong == "md5":
        assert f"expected {'0' * 32}, got {images.md5}" in msg
    else:
        assert f"expected {images.size + 1:,} bytes, the server has {images.size:,}" in msg
    downloads = tmp_path / "data" / real.DOWNLOADS / "cub"
    assert not (downloads / "CUB_200_2011.tgz").exists()
    assert not (downloads / "CUB_200_2011.tgz.part").exists()
    assert not raw_dir.exists() and not list(raw_dir.parent.glob(".*"))


def test_google_drive_confirmation_page_is_followed(tmp_path, server):
    form = (
        "<html><body><p>Google Drive can't scan this file for viruses.</p>"
        '<form id="download-form" action="/download" method="get">'
        '<input type="submit" value="Download anyway">'
        '<input type="hidden" name="id" value="XYZ"><input type="hidden" name="export" value="download">'
        '<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-1">'
        "</form></body></html>"
    )
    server.pages["/uc?export=download&id=XYZ"] = form
    server.files["/download?id=XYZ&export=download&confirm=t&uuid=u-1"] = BLOB
    archive = dl.Archive("cvpr2016_cub.tar.gz", (server.url("/uc?export=download&id=XYZ"),))
    path, seen = dl.fetch(archive, tmp_path, FAST)
    assert path.read_bytes() == BLOB and seen["verified"] is False and seen["md5"] == _md5(BLOB)


def test_web_page_instead_of_the_file_is_refused(tmp_path, server):
    server.pages["/uc?id=Q"] = (
        "<html><body>Too many users have viewed or downloaded this file recently.</body></html>"
    )
    archive = dl.Archive("cvpr2016_flowers.tar.gz", (server.url("/uc?id=Q"),), page="https://drive.example/Q")
    with pytest.raises(DataError, match=r"web page instead of the file.*https://drive\.example/Q"):
        dl.fetch(archive, tmp_path, FAST)
    assert list(tmp_path.iterdir()) == []


def test_bad_cached_copy_is_fetched_again(tmp_path, server):
    archive = _archive(server, BLOB)
    (tmp_path / "blob.tgz").write_bytes(b"truncated")
    path, _ = dl.fetch(archive, tmp_path, FAST)
    assert path.read_bytes() == BLOB and len(server.log) == 1


# Section: safe extraction.


def _evil_tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            data = b"pwned" if m.isfile() else None
            if data is not None:
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


EVIL = {
    "absolute": lambda out: [_member(str(out / "evil.txt"))],
    "dotdot": lambda out: [_member("../outside/evil.txt")],
    "symlink-out": lambda out: [_member("link", tarfile.SYMTYPE, "../outside"), _member("link/evil.txt")],
    "symlink-absolute": lambda out: [_member("link", tarfile.SYMTYPE, str(out)), _member("link/evil.txt")],
    "hardlink-out": lambda out: [_member("hard", tarfile.LNKTYPE, "../outside/secret")],
    # 'd' -> '.' is harmless alone; 'd/e' -> '../outside' then leaves, which only the real path shows.
    "symlink-chain": lambda out: [
        _member("d", tarfile.SYMTYPE, "."),
        _member("d/e", tarfile.SYMTYPE, "../outside"),
        _member("d/e/evil.txt"),
    ],
}


@pytest.mark.parametrize("case", sorted(EVIL))
def test_tar_members_leaving_the_folder_are_refused(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep")
    archive = _evil_tar(tmp_path / "evil.tgz", EVIL[case](outside))
    with pytest.raises(UnsafeArchiveError, match="refusing to extract"):
        extract(archive, tmp_path / "dest")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "keep"


@pytest.mark.parametrize("name", ["../outside/evil.txt", "/abs/evil.txt", "C:/evil.txt"])
def test_zip_members_leaving_the_folder_are_refused(tmp_path, name):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr(zipfile.ZipInfo(name), b"pwned")
    (tmp_path / "outside").mkdir()
    with pytest.raises(UnsafeArchiveError):
        extract(archive, tmp_path / "dest")
    assert list((tmp_path / "outside").iterdir()) == []


def test_traversal_in_a_dataset_archive_leaves_nothing(tmp_path, server):
    mini = mini_cub()
    evil = _tgz({"CUB_200_2011/images.txt": b"1 a/b.jpg\n", "CUB_200_2011/images/../../../../evil.jpg": b"x"})
    mini = dataclasses.replace(mini, files={**mini.files, "CUB_200_2011.tgz": evil})
    spec = spec_for("cub", mini, serve(server, mini))
    raw_dir = tmp_path / "data/raw/cub"
    with pytest.raises(UnsafeArchiveError, match=r"CUB_200_2011\.tgz: member .* contains '\.\.'"):
        real.download("cub", data_cfg(tmp_path), raw_dir, spec=spec, options=FAST)
    assert not raw_dir.exists() and not list(raw_dir.parent.glob(".*"))
    assert not list(tmp_path.rglob("evil.jpg"))


def test_extract_selects_members_and_reports_corrupt_archives(tmp_path):
    archive = tmp_path / "a.tgz"
    archive.write_bytes(_tgz({"./jpg/": None, "./jpg/image_00001.jpg": b"x", "./README.txt": b"r"}))
    assert extract(archive, tmp_path / "out", members=("jpg/*",)) == 1
    assert [p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")] == [
        "jpg",
        "jpg/image_00001.jpg",
    ]
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(DataError, match=r"broken\.tgz is not a readable tar/zip archive"):
        extract(broken, tmp_path / "out2")


# Section: published split sizes.


def test_split_sizes_checked_for_published_archives(tmp_path, server):
    mini = mini_cub()
    urls = serve(server, mini)
    wrong = dataclasses.replace(spec_for("cub", mini, urls), expected={"train": 8855, "test": 2933})
    raw_dir = tmp_path / "data/raw/cub"
    real.download("cub", data_cfg(tmp_path), raw_dir, spec=wrong, options=FAST)
    with pytest.raises(
        DataError, match=r"found 6 train / 2 test images, the published archives hold 8,855 train"
    ):
        sources.source_items("cub", raw_dir, data_cfg(tmp_path))
    _, extra = sources.source_items("cub", raw_dir, data_cfg(tmp_path, verify_counts=False))
    assert extra["split_check"].startswith("not checked (data.verify_counts is false)")
    # Archives without published checksums are not "the full archives": nothing to compare with.
    real.download("cub", data_cfg(tmp_path), raw_dir, spec=spec_for("cub", mini, urls, checksums=False))
    _, extra = sources.source_items("cub", raw_dir, data_cfg(tmp_path))
    assert extra["split_check"].startswith("not checked (the archives are not the published ones)")


def test_published_specs_match_the_design():
    cub, flowers = real.SPECS["cub"], real.SPECS["flowers"]
    archives = {p.archive.name: p.archive for s in (cub, flowers) for p in s.parts}
    assert archives["CUB_200_2011.tgz"].md5 == "97eceeb196236b17998738112f37df78"
    assert archives["CUB_200_2011.tgz"].size == 1_150_585_339
    assert archives["102flowers.tgz"].md5 == "52808999861908f626f3c1f4e79d11fa"
    assert archives["imagelabels.mat"].md5 == "e0620be6f572b9609742df49c70aed4d"
    assert archives["cvpr2016_cub.tar.gz"].md5 is None and archives["cvpr2016_flowers.tar.gz"].md5 is None
    assert dict(cub.expected) == {"train": 8855, "test": 2933}
    assert dict(flowers.expected) == {"train": 7034, "test": 1155}
    assert all(a.urls and a.urls[0].startswith("https://") for a in archives.values())


# Section: a folder already extracted in the official layout (data.extracted).


def extracted_copy(mini: Mini, folder: Path) -> Path:
    """The miniature as a user has it after extracting the archives by hand (everything, in place)."""
    folder.mkdir()
    for name, data in mini.files.items():
        if name.endswith((".tgz", ".tar.gz")):
            (folder / name).write_bytes(data)
            extract(folder / name, folder)
            (folder / name).unlink()
        else:
            (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("dataset", ["cub", "flowers"])
def test_extracted_folder_is_indexed_in_place_and_matches_the_archive_path(tmp_path, server, dataset):
    mini = MINIS[dataset]()
    spec = spec_for(dataset, mini, serve(server, mini))
    folder = extracted_copy(mini, tmp_path / "mine")
    raw_dir = tmp_path / "data/raw" / dataset
    data = data_cfg(tmp_path, extracted=str(folder))

    info = real.download(dataset, data, raw_dir, spec=spec)
    assert server.log == []  # no network
    assert info["extracted"] == {"path": str(folder.resolve()), "absent": 0, "absent_examples": []}
    assert info["split_check"].startswith("checked: ")
    # No image is copied: data/raw holds the small files and the md5 of every image.
    assert not list(raw_dir.rglob("*.jpg"))
    index = (raw_dir / real.IMAGE_INDEX).read_text().splitlines()
    assert len(index) == 1 + sum(mini.counts.values())
    rel, size, md5 = index[1].split("\t")
    assert int(size) == (folder / rel).stat().st_size and md5 == _md5((folder / rel).read_bytes())

    shards = _preprocess(dataset, raw_dir, data, tmp_path / "shards")
    assert [r["image_id"] for r in shards["rejected"]] == [mini.no_caption]  # same validation
    assert shards["split_check"].startswith("checked: ")

    # The same dataset through the archives gives the same images, captions and splits.
    archive_raw = tmp_path / "data/raw-archives" / dataset
    real.download(dataset, data_cfg(tmp_path), archive_raw, spec=spec, options=FAST)
    _preprocess(dataset, archive_raw, data_cfg(tmp_path), tmp_path / "shards-archives")
    for split in ("train", "test"):
        a, b = load_split(tmp_path / "shards", split), load_split(tmp_path / "shards-archives", split)
        assert a.image_ids == b.image_ids and a.captions == b.captions and a.class_names == b.class_names
        np.testing.assert_array_equal(a.images, b.images)


def test_partial_extracted_copy_is_refused_until_verify_counts_is_false(tmp_path):
    mini = mini_flowers()
    spec = dataclasses.replace(
        spec_for("flowers", mini, {n: () for n in mini.files}), expected_classes={"train": 2, "test": 1}
    )
    folder = extracted_copy(mini, tmp_path / "mine")
    (folder / "jpg/image_00003.jpg").unlink()  # listed by imagelabels.mat, absent here
    raw_dir = tmp_path / "data/raw/flowers"
    with pytest.raises(DataError) as err:
        real.download("flowers", data_cfg(tmp_path, extracted=str(folder)), raw_dir, spec=spec)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("flowers: data.extracted = ")
    assert "is a partial copy: 4 train / 2 test images in 2 / 1 classes (1 listed images absent)" in msg
    assert "the published dataset has 5 / 2 images in 2 / 1 classes" in msg
    assert msg.endswith("set data.verify_counts: false to use this subset as it is.")
    assert not raw_dir.exists() and not list(raw_dir.parent.glob(".*"))  # nothing half-written

    data = data_cfg(tmp_path, extracted=str(folder), verify_counts=False)
    info = real.download("flowers", data, raw_dir, spec=spec)
    assert info["split_check"].startswith(
        "not checked (data.verify_counts is false): a partial copy: 4 train"
    )
    assert info["extracted"]["absent_examples"] == ["jpg/image_00003.jpg"]
    items, extra = sources.source_items("flowers", raw_dir, data)
    assert "image_00003" not in {i.image_id for i in items} and len(items) == 6
    assert extra["split_check"] == info["split_check"]
    # The stage's own check runs at preprocess too: turning verification back on stops there.
    with pytest.raises(DataError, match="is a partial copy"):
        sources.source_items("flowers", raw_dir, data_cfg(tmp_path, extracted=str(folder)))


def test_extracted_folder_missing_pieces_are_one_line_errors(tmp_path):
    mini = mini_cub()
    spec = spec_for("cub", mini, {n: () for n in mini.files})
    raw_dir = tmp_path / "data/raw/cub"
    with pytest.raises(DataError, match=r"^cub: data\.extracted = .* is not a folder; .* CUB_200_2011/"):
        real.download("cub", data_cfg(tmp_path, extracted=str(tmp_path / "nothing")), raw_dir, spec=spec)
    folder = extracted_copy(mini, tmp_path / "mine")
    data = data_cfg(tmp_path, extracted=str(folder))
    (folder / "CUB_200_2011/image_class_labels.txt").rename(tmp_path / "labels.txt")
    with pytest.raises(
        DataError, match=r"^cub: .*CUB_200_2011/image_class_labels\.txt is missing; data\.extracted"
    ):
        real.download("cub", data, raw_dir, spec=spec)
    (tmp_path / "labels.txt").rename(folder / "CUB_200_2011/image_class_labels.txt")
    shutil.rmtree(folder / "cvpr2016_cub")
    with pytest.raises(DataError, match=r"^cub: .* holds no Reed caption folder .*; data\.extracted = "):
        real.download("cub", data, raw_dir, spec=spec)
    assert not raw_dir.exists()
    with pytest.raises(ConfigError, match="not both"):
        data_cfg(tmp_path, extracted=str(folder), archives=str(folder))


def test_image_changed_since_download_stops_preprocess(tmp_path):
    mini = mini_cub()
    spec = spec_for("cub", mini, {n: () for n in mini.files})
    folder = extracted_copy(mini, tmp_path / "mine")
    data = data_cfg(tmp_path, extracted=str(folder))
    raw_dir = tmp_path / "data/raw/cub"
    real.download("cub", data, raw_dir, spec=spec)
    image = next((folder / "CUB_200_2011/images").rglob("Laysan*_0001_*.jpg"))
    image.write_bytes(_jpeg((1, 2, 3)))
    with pytest.raises(
        DataError, match=r"Laysan.*\.jpg has changed since `download` indexed it .*dvc repro -f download"
    ):
        _preprocess("cub", raw_dir, data, tmp_path / "shards")
    assert not (tmp_path / "shards" / "manifest.json").exists()
    image.unlink()
    with pytest.raises(DataError, match=r"cannot be read .* since `download` indexed it"):
        _preprocess("cub", raw_dir, data, tmp_path / "shards")
    shutil.rmtree(folder)
    with pytest.raises(
        DataError, match=r"indexes the extracted folder .*, which is gone; set data\.extracted"
    ):
        sources.source_items("cub", raw_dir, data)


@pytest.mark.parametrize("dataset", ["flowers", "cub"])
def test_the_real_folders_in_shared(tmp_path, dataset):
    """../shared/data/real: flowers is a full copy (the published split passes), CUB a named partial one."""
    raw_dir = tmp_path / "raw" / dataset
    data = data_cfg(tmp_path, extracted=str(real_data(dataset)))
    if dataset == "flowers":
        info = real.download("flowers", data, raw_dir)
        assert (
            info["split_check"] == "checked: 7,034 train / 1,155 test images in 82 / 20 classes, as published"
        )
        assert info["images"] == 8189 and not list(raw_dir.rglob("*.jpg"))
        return
    with pytest.raises(DataError) as err:
        real.download("cub", data, raw_dir)
    assert "is a partial copy: 1,897 train / 964 test images in 34 / 17 classes" in str(err.value)
    assert "8,855 / 2,933 images in 150 / 50 classes; set data.verify_counts: false" in str(err.value)
