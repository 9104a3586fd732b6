"""Real datasets (CUB-200-2011, Oxford-102 flowers) with the Reed et al. (CVPR 2016) captions.

`download` gets the archives (from the network, or from `data.archives` when set: the offline path),
checks them, and extracts only what preprocessing reads into `data/raw/<dataset>/`:

    cub/      CUB_200_2011/{images.txt, classes.txt, image_class_labels.txt, images/<class>/<stem>.jpg}
              cvpr2016_cub/{trainvalclasses.txt, testclasses.txt, text_c10/<class>/<stem>.txt}
    flowers/  jpg/image_NNNNN.jpg, imagelabels.mat
              cvpr2016_flowers/{trainvalclasses.txt, testclasses.txt, text_c10/class_NNNNN/<stem>.txt}
    source.json   per archive: URL or path, size, md5 seen, and whether a published md5 was matched

`source_items` lists one SourceItem per indexed image with its 10 captions and its split (the caption
archive's class split, as in the text-to-image literature).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sisgan.config import DataConfig
from sisgan.data.download import Archive, FetchOptions, fetch, use_local
from sisgan.data.extract import extract
from sisgan.data.shards import SPLITS, SourceItem
from sisgan.data.sources import SOURCE_INFO
from sisgan.io import atomic_dir
from sisgan.errors import DataError

DOWNLOADS = "downloads"  # <data.root>/downloads/<dataset>/: the download cache, outside DVC's outs


@dataclasses.dataclass(frozen=True)
class Part:
    """An archive and what of it preprocessing needs: glob patterns of members, or None (a plain file)."""

    archive: Archive
    members: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from and what its full, published version holds."""

    name: str
    parts: tuple[Part, ...]
    expected: Mapping[str, int]  # images per split in the published archives (train = the trainval classes)


# Section: the published archives.

_CUB_PAGE = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
_FLOWERS_PAGE = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
_REED_PAGE = "https://github.com/reedscot/cvpr2016"


def _drive(file_id: str, resource_key: str = "") -> tuple[str, ...]:
    """Download URLs of a public Google Drive file (the direct endpoint, then the classic one).

    Files shared before 2021 need their resource key, as in the links the authors published.
    """
    key = f"&resourcekey={resource_key}" if resource_key else ""
    return (
        f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t{key}",
        f"https://drive.google.com/uc?export=download&id={file_id}{key}",
    )


# Reed et al.'s caption archives have no published checksum: the md5 seen is recorded in the manifest.
_CAPTION_MEMBERS = ("*classes.txt", "*text_c10/*.txt")

CUB = DatasetSpec(
    name="cub",
    parts=(
        Part(
            Archive(
                name="CUB_200_2011.tgz",
                urls=(
                    "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                    "https://s3.amazonaws.com/fast-ai-imageclas/CUB_200_2011.tgz",
                    *_drive("1hbzc_P1FuxMkcabkgn9ZKinBwW683j45"),
                ),
                md5="97eceeb196236b17998738112f37df78",
                size=1_150_585_339,
                page=_CUB_PAGE,
            ),
            # Images and the index files; not parts, attributes or bounding boxes.
            members=(
                "CUB_200_2011/images/*",
                "CUB_200_2011/images.txt",
                "CUB_200_2011/classes.txt",
                "CUB_200_2011/image_class_labels.txt",
            ),
        ),
        Part(
            Archive(
                name="cvpr2016_cub.tar.gz",
                urls=_drive("0B0ywwgffWnLLZW9uVHNjb2JmNlE", "0-8y2UVmBHAlG26HafWYNoFQ"),
                page="https://drive.google.com/file/d/0B0ywwgffWnLLZW9uVHNjb2JmNlE/view (from "
                + _REED_PAGE
                + ")",
            ),
            members=_CAPTION_MEMBERS,
        ),
    ),
    expected={"train": 8855, "test": 2933},
)

FLOWERS = DatasetSpec(
    name="flowers",
    parts=(
        Part(
            Archive(
                name="102flowers.tgz",
                urls=(
                    "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
                    "http://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
                ),
                md5="52808999861908f626f3c1f4e79d11fa",
                size=344_862_509,
                page=_FLOWERS_PAGE,
            ),
            members=("jpg/*",),
        ),
        Part(
            Archive(
                name="imagelabels.mat",
                urls=(
                    "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
                    "http://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
                ),
                md5="e0620be6f572b9609742df49c70aed4d",
                size=502,
                page=_FLOWERS_PAGE,
            ),
            members=None,
        ),
        Part(
            Archive(
                name="cvpr2016_flowers.tar.gz",
                urls=_drive("0B0ywwgffWnLLcms2WWJQRFNSWXM", "0-Av8zFbeDDvNcF1sSjDR32w"),
                page="https://drive.google.com/file/d/0B0ywwgffWnLLcms2WWJQRFNSWXM/view (from "
                + _REED_PAGE
                + ")",
            ),
            members=_CAPTION_MEMBERS,
        ),
    ),
    expected={"train": 7034, "test": 1155},
)

SPECS: dict[str, DatasetSpec] = {"cub": CUB, "flowers": FLOWERS}


def spec_of(dataset: str) -> DatasetSpec:
    if dataset not in SPECS:
        raise DataError(f"dataset {dataset!r} has no archives; real datasets are {sorted(SPECS)}.")
    return SPECS[dataset]


# Section: download.


def _obtain(
    spec: DatasetSpec, part: Part, data: DataConfig, options: FetchOptions | None
) -> tuple[Path, dict[str, Any]]:
    """The archive's verified path: from data.archives (no network) or downloaded into the cache."""
    if data.archives is not None:
        folder = Path(data.archives)
        if not folder.is_dir():
            raise DataError(
                f"{spec.name}: data.archives = {data.archives!r} is not a folder; point it at the folder "
                f"holding {', '.join(p.archive.name for p in spec.parts)}, or null to download them."
            )
        path, seen = use_local(folder, part.archive)
        return path, {**seen, "path": str(path.resolve())}
    return fetch(part.archive, Path(data.root) / DOWNLOADS / spec.name, options)


def download(
    dataset: str,
    data: DataConfig,
    raw_dir: Path,
    *,
    spec: DatasetSpec | None = None,
    options: FetchOptions | None = None,
) -> dict[str, Any]:
    """Get, verify and extract a real dataset into raw_dir (atomically). Returns the summary in source.json.

    spec/options default to the published archives and standard retries; tests pass their own.
    """
    spec = spec or spec_of(dataset)
    if dataset not in _LAYOUTS:
        raise DataError(f"dataset {dataset!r} is not a real dataset; real datasets are {sorted(_LAYOUTS)}.")
    obtained = [(part, *_obtain(spec, part, data, options)) for part in spec.parts]
    with atomic_dir(raw_dir) as tmp:
        for part, path, _seen in obtained:
            if part.members is None:
                shutil.copyfile(path, tmp / part.archive.name)
            elif extract(path, tmp, part.members) == 0:
                raise DataError(
                    f"{part.archive.name} holds none of {list(part.members)}; is it the right archive?"
                )
        _caption_root(tmp)  # a wrong caption archive fails here, not at preprocess
        info = {
            "dataset": dataset,
            "images": len(_LAYOUTS[dataset](tmp)),
            "archives": [seen for _, _, seen in obtained],
            # Verification refused any archive whose published checksum differed, so the image archives
            # are the full published ones whenever the spec has checksums (the caption archives have none).
            "published": any(p.archive.md5 is not None for p in spec.parts),
            "expected": dict(spec.expected),
        }
        (tmp / SOURCE_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return info


# Section: layouts.


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One indexed image before its captions are read."""

    image_id: str
    path: Path
    class_id: int  # 0-based
    class_name: str
    caption_class: str  # the class folder name in text_c10/ and in the split files


def _read_index(path: Path) -> dict[int, str]:
    """CUB's `<id> <value>` text files as {id: value}."""
    if not path.is_file():
        raise DataError(f"{path} is missing; the CUB archive is incomplete: rerun `dvc repro download`.")
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not key.isdigit() or not value:
            raise DataError(f"{path}:{lineno} is not '<number> <value>': {line!r}; the archive is corrupt.")
        out[int(key)] = value.strip()
    return out


def _caption_root(raw_dir: Path) -> Path:
    """The caption archive's folder (the one holding trainvalclasses.txt and text_c10/)."""
    for candidate in (raw_dir, *sorted(p for p in raw_dir.iterdir() if p.is_dir())):
        if (candidate / "trainvalclasses.txt").is_file() and (candidate / "text_c10").is_dir():
            return candidate
    raise DataError(
        f"{raw_dir} holds no Reed caption folder (trainvalclasses.txt + text_c10/); "
        "the caption archive is missing or not the cvpr2016 one: rerun `dvc repro download`."
    )


def _cub_entries(raw_dir: Path) -> list[_Entry]:
    """CUB is indexed by images.txt: files it does not list (e.g. stray *_rgb.jpg copies) are ignored."""
    root = raw_dir / "CUB_200_2011"
    classes = _read_index(root / "classes.txt")
    labels = _read_index(root / "image_class_labels.txt")
    entries = []
    for image_num, rel in sorted(_read_index(root / "images.txt").items()):
        if image_num not in labels or int(labels[image_num]) not in classes:
            raise DataError(
                f"CUB image {image_num} ({rel}) has no class in image_class_labels.txt/classes.txt."
            )
        class_num = int(labels[image_num])
        name = classes[class_num]
        entries.append(_Entry(Path(rel).stem, root / "images" / rel, class_num - 1, name, name))
    return entries


def _flower_labels(path: Path) -> list[int]:
    import scipy.io

    try:
        labels = scipy.io.loadmat(path)["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(
            f"{path} is not Oxford-102's imagelabels.mat ({e}); rerun `dvc repro download`."
        ) from None
    return [int(v) for v in labels.ravel()]


def _flowers_entries(raw_dir: Path) -> list[_Entry]:
    """Flower image numbers are not class-ordered: image_NNNNN's label is entry NNNNN of imagelabels.mat."""
    entries = []
    for number, label in enumerate(_flower_labels(raw_dir / "imagelabels.mat"), 1):
        stem, name = f"image_{number:05d}", f"class_{label:05d}"
        entries.append(_Entry(stem, raw_dir / "jpg" / f"{stem}.jpg", label - 1, name, name))
    return entries


_LAYOUTS = {"cub": _cub_entries, "flowers": _flowers_entries}


# Section: items.


def _read_split_file(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path} is missing; the caption archive is incomplete: rerun `dvc repro download`.")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _class_splits(captions: Path, classes: set[str]) -> dict[str, str]:
    """{caption class: 'train'|'test'} from trainvalclasses.txt / testclasses.txt; every class needs one."""
    train = _read_split_file(captions / "trainvalclasses.txt")
    test = _read_split_file(captions / "testclasses.txt")
    both = sorted(set(train) & set(test))
    if both:
        raise DataError(
            f"{captions}: classes {both[:3]} are in both trainvalclasses.txt and testclasses.txt."
        )
    split = {c: "train" for c in train} | {c: "test" for c in test}
    unlisted = sorted(classes - set(split))
    if unlisted:
        raise DataError(
            f"{captions}: classes {unlisted[:3]} ({len(unlisted)} in all) are in neither trainvalclasses.txt "
            "nor testclasses.txt: the caption archive does not belong to these images."
        )
    return split


def _read_captions(path: Path) -> tuple[str, ...]:
    """The non-empty lines of a text_c10 file; () when it is missing (the image is then rejected)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _count_check(dataset: str, counts: Mapping[str, int], info: Mapping[str, Any], data: DataConfig) -> str:
    """Compare the split sizes with the published ones when the full published archives were used."""
    expected = info.get("expected") or {}
    found = " / ".join(f"{counts.get(s, 0):,} {s}" for s in SPLITS)
    if not data.verify_counts:
        return f"not checked (data.verify_counts is false): {found}"
    if not info.get("published"):
        return f"not checked (the archives are not the published ones): {found}"
    if any(counts.get(s, 0) != expected.get(s) for s in SPLITS):
        want = " / ".join(f"{expected.get(s, 0):,} {s}" for s in SPLITS)
        raise DataError(
            f"{dataset}: found {found} images, the published archives hold {want}; "
            "rerun `dvc repro download`, or set data.verify_counts: false for a modified copy."
        )
    return f"checked: {found} images, as published"


def source_items(dataset: str, raw_dir: Path, data: DataConfig) -> tuple[list[SourceItem], dict[str, Any]]:
    """One SourceItem per indexed image (captions: text_c10; split: the class lists), plus manifest facts.

    An image whose caption file is missing is still listed, with no captions, so that the shard writer
    records it as rejected.
    """
    raw_dir = Path(raw_dir)
    if dataset not in _LAYOUTS:
        raise DataError(f"dataset {dataset!r} is not a real dataset; real datasets are {sorted(_LAYOUTS)}.")
    info = json.loads((raw_dir / SOURCE_INFO).read_text())
    entries = _LAYOUTS[dataset](raw_dir)
    captions_root = _caption_root(raw_dir)
    splits = _class_splits(captions_root, {e.caption_class for e in entries})
    items, missing = [], []
    for e in entries:
        caption_file = captions_root / "text_c10" / e.caption_class / f"{e.image_id}.txt"
        captions = _read_captions(caption_file)
        if not captions:
            missing.append(str(caption_file.relative_to(raw_dir)))
        items.append(
            SourceItem(
                e.image_id, e.class_id, e.class_name, splits[e.caption_class], captions, path=str(e.path)
            )
        )
    counts = {s: sum(i.split == s for i in items) for s in SPLITS}
    check = _count_check(dataset, counts, info, data)
    extra = {"source": info, "split_check": check, "captions_missing": missing}
    return items, extra
