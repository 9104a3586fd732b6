"""Real datasets (CUB-200-2011, Oxford-102 flowers) with the Reed et al. (CVPR 2016) captions.

`download` gets the archives (from the network, or from `data.archives` when set: the offline path),
checks them, and extracts only what preprocessing reads into `data/raw/<dataset>/`:

    cub/      CUB_200_2011/{images.txt, classes.txt, image_class_labels.txt, images/<class>/<stem>.jpg}
              cvpr2016_cub/{trainvalclasses.txt, testclasses.txt, text_c10/<class>/<stem>.txt}
    flowers/  jpg/image_NNNNN.jpg, imagelabels.mat
              cvpr2016_flowers/{trainvalclasses.txt, testclasses.txt, text_c10/class_NNNNN/<stem>.txt}
    source.json   per archive: URL or path, size, md5 seen, and whether a published md5 was matched

With `data.extracted` set, the dataset is already extracted in that layout somewhere else (a folder the user
has): `index_extracted` copies only the small files (index files, class lists, captions) and records the md5
of every image, which preprocess then reads in place (docs/datasets.md states what DVC hashes then).

`source_items` lists one SourceItem per indexed image with its 10 captions and its split (the caption
archive's class split, as in the text-to-image literature).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sisgan.config import DataConfig
from sisgan.data.download import Archive, FetchOptions, fetch, md5sum, use_local
from sisgan.data.extract import extract
from sisgan.data.raw import read_info, write_info
from sisgan.data.shards import SPLITS, SourceItem
from sisgan.errors import DataError
from sisgan.io import atomic_dir

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
    expected_classes: Mapping[str, int] = dataclasses.field(default_factory=dict)  # classes per split


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
    expected_classes={"train": 150, "test": 50},
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
    expected_classes={"train": 82, "test": 20},
)

SPECS: dict[str, DatasetSpec] = {"cub": CUB, "flowers": FLOWERS}


def spec_of(dataset: str) -> DatasetSpec:
    if dataset not in SPECS:
        raise DataError(f"dataset {dataset!r} has no archives; real datasets are {sorted(SPECS)}.")
    return SPECS[dataset]


# Section: download from archives.


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

    With data.extracted set, the dataset is indexed in place instead (see `index_extracted`).
    spec/options default to the published archives and standard retries; tests pass their own.
    """
    spec = spec or spec_of(dataset)
    if dataset not in _LAYOUTS:
        raise DataError(f"dataset {dataset!r} is not a real dataset; real datasets are {sorted(_LAYOUTS)}.")
    if data.extracted is not None:
        return index_extracted(dataset, data, raw_dir, spec)
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
            "images": len(_LAYOUTS[dataset](tmp, _RERUN)),
            "archives": [seen for _, _, seen in obtained],
            # Verification refused any archive whose published checksum differed, so the image archives
            # are the full published ones whenever the spec has checksums (the caption archives have none).
            "published": any(p.archive.md5 is not None for p in spec.parts),
            "expected": dict(spec.expected),
        }
        write_info(tmp, info)
    return info


# Section: an extracted folder (data.extracted), indexed in place.
#
# data/raw/<dataset>/ then holds everything preprocessing reads except the images: the index files, the
# caption folder (class lists + the caption files of the indexed images), IMAGE_INDEX (relative path, size
# and md5 of every image found) and source.json (the folder's absolute path). That is what DVC hashes and
# caches: a few MB. The images are read in place by preprocess, which checks each one's md5 against the
# index, so shards are only ever made of the bytes download saw.

IMAGE_INDEX = "images.tsv"
_INDEX_FILES = {
    "cub": ("CUB_200_2011/images.txt", "CUB_200_2011/classes.txt", "CUB_200_2011/image_class_labels.txt"),
    "flowers": ("imagelabels.mat",),
}
_EXPECTED_TREE = {
    "cub": "CUB_200_2011/ (images/, images.txt, classes.txt, image_class_labels.txt) and cvpr2016_cub/",
    "flowers": "jpg/, imagelabels.mat and cvpr2016_flowers/",
}
_RERUN = "rerun `dvc repro download`"


def _extracted_fix(dataset: str, folder: str) -> str:
    return (
        f"data.extracted = {folder!r} must hold {dataset} as its archives extract: {_EXPECTED_TREE[dataset]} "
        "(docs/datasets.md)"
    )


def _extracted_root(dataset: str, data: DataConfig) -> Path:
    assert data.extracted is not None
    root = Path(data.extracted)
    if not root.is_dir():
        fix = _extracted_fix(dataset, data.extracted)
        raise DataError(f"{dataset}: data.extracted = {data.extracted!r} is not a folder; {fix}.")
    return root.resolve()


def _copy_captions(src: Path, dest: Path, entries: list[_Entry], fix: str) -> Path:
    """The caption folder's class lists and the caption files of the entries, copied to dest/<its name>."""
    out = dest / src.name
    for name in ("trainvalclasses.txt", "testclasses.txt"):
        if not (src / name).is_file():
            raise DataError(f"{src / name} is missing; {fix}.")
        (out / "text_c10").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, out / name)
    for e in entries:
        rel = Path("text_c10") / e.caption_class / f"{e.image_id}.txt"
        if (src / rel).is_file():  # a missing one is reported by preprocess (captions_missing, rejected)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, out / rel)
    return out


def index_extracted(dataset: str, data: DataConfig, raw_dir: Path, spec: DatasetSpec) -> dict[str, Any]:
    """Index a dataset already extracted in the official layout (data.extracted): no image is copied.

    Same validation as the archive path (index files, caption folder, class splits), plus the split sizes:
    a folder holding fewer images than the published dataset stops here, naming the counts, unless
    data.verify_counts is false. Images listed by the index but absent from the folder are left out and
    counted in source.json.
    """
    root = _extracted_root(dataset, data)
    fix = _extracted_fix(dataset, str(data.extracted))
    with atomic_dir(raw_dir) as tmp:
        for rel in _INDEX_FILES[dataset]:
            if not (root / rel).is_file():
                raise DataError(f"{dataset}: {root / rel} is missing; {fix}.")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, tmp / rel)
        entries = _LAYOUTS[dataset](tmp, fix)
        try:
            captions_src = _caption_root(root)
        except DataError:
            what = "no Reed caption folder (trainvalclasses.txt + text_c10/)"
            raise DataError(f"{dataset}: {root} holds {what}; {fix}.") from None
        captions = _copy_captions(captions_src, tmp, entries, fix)
        rows, absent, present = [], [], []
        for e in entries:
            rel = e.path.relative_to(tmp).as_posix()
            image = root / rel
            if image.is_file():
                rows.append(f"{rel}\t{image.stat().st_size}\t{md5sum(image)}\n")
                present.append(e)
            else:
                absent.append(rel)
        (tmp / IMAGE_INDEX).write_text("path\tsize\tmd5\n" + "".join(rows))
        splits = _class_splits(captions, {e.caption_class for e in entries})
        counts, classes = _split_sizes([(splits[e.caption_class], e.class_name) for e in present])
        info = {
            "dataset": dataset,
            "images": len(present),
            "extracted": {"path": str(root), "absent": len(absent), "absent_examples": absent[:5]},
            "published": False,  # no archive checksum to compare: the split sizes are checked instead
            "expected": dict(spec.expected),
            "expected_classes": dict(spec.expected_classes),
        }
        info["split_check"] = _count_check(dataset, counts, classes, info, data)
        write_info(tmp, info)
    return info


def _read_image_index(raw_dir: Path) -> dict[str, str]:
    """{relative path: md5} of IMAGE_INDEX."""
    path = raw_dir / IMAGE_INDEX
    if not path.is_file():
        raise DataError(f"{path} is missing: data/raw is incomplete; {_RERUN}.")
    lines = path.read_text().splitlines()[1:]
    return {rel: md5 for rel, _size, md5 in (line.split("\t") for line in lines if line)}


# Section: layouts.


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One indexed image before its captions are read."""

    image_id: str
    path: Path
    class_id: int  # 0-based
    class_name: str
    caption_class: str  # the class folder name in text_c10/ and in the split files


def _read_index(path: Path, fix: str) -> dict[int, str]:
    """CUB's `<id> <value>` text files as {id: value}."""
    if not path.is_file():
        raise DataError(f"{path} is missing; the CUB archive is incomplete: {fix}.")
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not key.isdigit() or not value:
            what = f"{path}:{lineno} is not '<number> <value>': {line!r}"
            raise DataError(f"{what}; the file is corrupt: {fix}.")
        out[int(key)] = value.strip()
    return out


def _caption_root(raw_dir: Path) -> Path:
    """The caption archive's folder (the one holding trainvalclasses.txt and text_c10/)."""
    for candidate in (raw_dir, *sorted(p for p in raw_dir.iterdir() if p.is_dir())):
        if (candidate / "trainvalclasses.txt").is_file() and (candidate / "text_c10").is_dir():
            return candidate
    raise DataError(
        f"{raw_dir} holds no Reed caption folder (trainvalclasses.txt + text_c10/); "
        f"the caption archive is missing or not the cvpr2016 one: {_RERUN}."
    )


def _cub_entries(raw_dir: Path, fix: str) -> list[_Entry]:
    """CUB is indexed by images.txt: files it does not list (e.g. stray *_rgb.jpg copies) are ignored."""
    root = raw_dir / "CUB_200_2011"
    classes = _read_index(root / "classes.txt", fix)
    labels = _read_index(root / "image_class_labels.txt", fix)
    entries = []
    for image_num, rel in sorted(_read_index(root / "images.txt", fix).items()):
        if image_num not in labels or int(labels[image_num]) not in classes:
            raise DataError(
                f"CUB image {image_num} ({rel}) has no class in image_class_labels.txt/classes.txt; {fix}."
            )
        class_num = int(labels[image_num])
        name = classes[class_num]
        entries.append(_Entry(Path(rel).stem, root / "images" / rel, class_num - 1, name, name))
    return entries


def _flower_labels(path: Path, fix: str) -> list[int]:
    import scipy.io

    try:
        labels = scipy.io.loadmat(path)["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path} is not Oxford-102's imagelabels.mat ({e}); {fix}.") from None
    return [int(v) for v in labels.ravel()]


def _flowers_entries(raw_dir: Path, fix: str) -> list[_Entry]:
    """Flower image numbers are not class-ordered: image_NNNNN's label is entry NNNNN of imagelabels.mat."""
    entries = []
    for number, label in enumerate(_flower_labels(raw_dir / "imagelabels.mat", fix), 1):
        stem, name = f"image_{number:05d}", f"class_{label:05d}"
        entries.append(_Entry(stem, raw_dir / "jpg" / f"{stem}.jpg", label - 1, name, name))
    return entries


_LAYOUTS = {"cub": _cub_entries, "flowers": _flowers_entries}


# Section: items.


def _read_split_file(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path} is missing; the caption archive is incomplete: {_RERUN}.")
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


def _split_sizes(images: Sequence[tuple[str, str]]) -> tuple[dict[str, int], dict[str, int]]:
    """(images per split, classes per split) of (split, class name) pairs."""
    counts = {s: sum(split == s for split, _ in images) for s in SPLITS}
    classes = {s: len({c for split, c in images if split == s}) for s in SPLITS}
    return counts, classes


def _count_check(
    dataset: str,
    counts: Mapping[str, int],
    classes: Mapping[str, int],
    info: Mapping[str, Any],
    data: DataConfig,
) -> str:
    """Compare the split sizes with the published ones, for the full published archives and for any
    extracted folder (which must be a full copy unless data.verify_counts is false)."""
    expected = info.get("expected") or {}
    found = " / ".join(f"{counts.get(s, 0):,} {s}" for s in SPLITS)
    if "extracted" in info:
        return _extracted_check(dataset, found, counts, classes, info, data)
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


def _extracted_check(
    dataset: str,
    found: str,
    counts: Mapping[str, int],
    classes: Mapping[str, int],
    info: Mapping[str, Any],
    data: DataConfig,
) -> str:
    """An extracted folder has no archive checksum: only its split sizes say whether it is a full copy."""
    expected, expected_classes = info.get("expected") or {}, info.get("expected_classes") or {}
    found += " images in " + " / ".join(str(classes.get(s, 0)) for s in SPLITS) + " classes"
    published = " / ".join(f"{expected.get(s, 0):,}" for s in SPLITS) + " images in "
    published += " / ".join(str(expected_classes.get(s, "?")) for s in SPLITS) + " classes"
    full = all(counts.get(s, 0) == expected.get(s) for s in SPLITS)
    if full:
        return f"checked: {found}, as published"
    absent = info["extracted"]["absent"]
    partial = f"a partial copy: {found}" + (f" ({absent:,} listed images absent)" if absent else "")
    if not data.verify_counts:
        return f"not checked (data.verify_counts is false): {partial}; the published dataset has {published}"
    raise DataError(
        f"{dataset}: data.extracted = {info['extracted']['path']!r} is {partial}, the published dataset has "
        f"{published}; set data.verify_counts: false to use this subset as it is."
    )


def source_items(dataset: str, raw_dir: Path, data: DataConfig) -> tuple[list[SourceItem], dict[str, Any]]:
    """One SourceItem per indexed image (captions: text_c10; split: the class lists), plus manifest facts.

    An image whose caption file is missing is still listed, with no captions, so that the shard writer
    records it as rejected. For an extracted folder, the images are read in place and carry the md5 that
    download recorded; images absent from the folder are not listed (source.json counts them).
    """
    raw_dir = Path(raw_dir)
    if dataset not in _LAYOUTS:
        raise DataError(f"dataset {dataset!r} is not a real dataset; real datasets are {sorted(_LAYOUTS)}.")
    info = read_info(raw_dir, dataset)
    entries = _LAYOUTS[dataset](raw_dir, _RERUN)
    md5s: dict[str, str] | None = None
    images_root = raw_dir
    if "extracted" in info:
        images_root, md5s = Path(info["extracted"]["path"]), _read_image_index(raw_dir)
        if not images_root.is_dir():
            raise DataError(
                f"{raw_dir} indexes the extracted folder {images_root}, which is gone; set data.extracted to "
                f"where the dataset is now and {_RERUN}."
            )
    captions_root = _caption_root(raw_dir)
    splits = _class_splits(captions_root, {e.caption_class for e in entries})
    items, missing = [], []
    for e in entries:
        rel = e.path.relative_to(raw_dir).as_posix()
        if md5s is not None and rel not in md5s:
            continue  # absent from the extracted folder when it was indexed
        caption_file = captions_root / "text_c10" / e.caption_class / f"{e.image_id}.txt"
        captions = _read_captions(caption_file)
        if not captions:
            missing.append(str(caption_file.relative_to(raw_dir)))
        items.append(
            SourceItem(
                e.image_id,
                e.class_id,
                e.class_name,
                splits[e.caption_class],
                captions,
                path=str(images_root / rel),
                md5=md5s[rel] if md5s is not None else None,
            )
        )
    counts, classes = _split_sizes([(i.split, i.class_name) for i in items])
    check = _count_check(dataset, counts, classes, info, data)
    extra = {"source": info, "split_check": check, "captions_missing": missing}
    return items, extra
