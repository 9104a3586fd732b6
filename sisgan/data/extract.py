"""Safe extraction of tar and zip archives: nothing may land outside the target folder.

Every member is checked before it is written: absolute names, `..` components and links whose target
resolves outside the folder are refused with a DataError, and the caller (which extracts into a temporary
folder) throws the partial result away. Tar archives are read as a stream, in one pass.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from sisgan.errors import DataError


class UnsafeArchiveError(DataError):
    """An archive member would be written (or would point) outside the extraction folder."""


def member_name(name: str) -> str:
    """Archive member name without the `./` prefix many tar tools write (`./jpg/a.jpg` -> `jpg/a.jpg`)."""
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def selected(name: str, patterns: Sequence[str] | None) -> bool:
    """Whether a member matches one of the glob patterns (`*` crosses `/`); None selects everything."""
    return patterns is None or any(fnmatch.fnmatchcase(member_name(name), p) for p in patterns)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _refuse(archive: Path, what: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive.name}: {what}; refusing to extract it (the archive is unsafe or corrupt)."
    )


def _check_name(archive: Path, name: str) -> None:
    """Refuse absolute names and `..` before any path arithmetic (the name alone decides)."""
    unsafe = name.replace("\\", "/")
    if unsafe.startswith("/") or re.match(r"[A-Za-z]:/", unsafe):
        raise _refuse(archive, f"member {name!r} has an absolute path")
    if ".." in PurePosixPath(unsafe).parts:
        raise _refuse(archive, f"member {name!r} contains '..'")


def _check_target(archive: Path, name: str, root: str) -> str:
    """Real path the member would be written to; it must stay inside root (symlinks already on disk count)."""
    target = os.path.realpath(os.path.join(root, name))
    if not _inside(target, root):
        raise _refuse(archive, f"member {name!r} would be written to {target}, outside the target folder")
    return target


def _check_link(archive: Path, member: tarfile.TarInfo, root: str) -> None:
    """A symlink's target is relative to its own folder, a hard link's to the archive root."""
    if member.issym():
        if os.path.isabs(member.linkname):
            raise _refuse(archive, f"symlink {member.name!r} points to the absolute path {member.linkname!r}")
        base = os.path.dirname(os.path.realpath(os.path.join(root, member.name)))
    else:
        _check_name(archive, member.linkname)
        base = root
    target = os.path.realpath(os.path.join(base, member.linkname))
    if not _inside(target, root):
        raise _refuse(
            archive, f"link {member.name!r} -> {member.linkname!r} points outside the target folder"
        )


def _extract_tar(archive: Path, root: str, patterns: Sequence[str] | None) -> int:
    count = 0
    # "r|*": a forward-only stream, so a 1 GB .tgz is decompressed once.
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            _check_name(archive, member.name)
            _check_target(archive, member.name, root)
            if member.issym() or member.islnk():
                _check_link(archive, member, root)
            elif not (member.isfile() or member.isdir()):
                raise _refuse(archive, f"member {member.name!r} is a device or pipe")
            if selected(member.name, patterns):
                # The stdlib 'data' filter repeats these checks at write time and drops odd permission bits.
                tar.extract(member, root, filter="data")
                count += member.isfile()
    return count


def _extract_zip(archive: Path, root: str, patterns: Sequence[str] | None) -> int:
    count = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _check_name(archive, info.filename)
            _check_target(archive, info.filename, root)
            if stat.S_ISLNK(info.external_attr >> 16):
                # zipfile would write the link text as a regular file; a real archive of ours has none.
                raise _refuse(archive, f"member {info.filename!r} is a symlink")
            if selected(info.filename, patterns):
                zf.extract(info, root)
                count += not info.is_dir()
    return count


def extract(archive: str | Path, dest: str | Path, members: Sequence[str] | None = None) -> int:
    """Extract the members of a tar (any compression) or zip archive matching `members` into dest.

    members: glob patterns on member names (without a leading `./`); None extracts everything.
    Returns the number of files written. Raises UnsafeArchiveError for a member that would leave dest,
    DataError for a corrupt archive. On error dest may hold part of the archive: extract into a
    temporary folder and delete it then.
    """
    archive = Path(archive)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, root, members)
        return _extract_tar(archive, root, members)
    except tarfile.FilterError as e:
        raise _refuse(archive, str(e)) from None
    except (tarfile.ReadError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataError(
            f"{archive.name} is not a readable tar/zip archive ({e}); delete it and download it again."
        ) from None
