"""Verified, resumable downloads of dataset archives (and the same verification for archives on disk).

A download goes to `<name>.part`, resumes with an HTTP Range request after a dropped connection or an
interrupted run, retries with exponential back-off, and is renamed to `<name>` only after its size and md5
match. A file that fails verification is deleted, and the error names the archive, expected and got.

torchvision's `download_url` is not used: it neither resumes nor retries, writes straight to the final
name, and needs gdown for Google Drive. The Drive interstitial ("can't scan this file for viruses") is a
plain HTML form; `_confirm_url` follows it with requests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html.parser
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

from sisgan.errors import DataError

if TYPE_CHECKING:
    import requests

USER_AGENT = "sisgan-dataset-downloader (python-requests)"
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class Archive:
    """One file to fetch: official URL first, then mirrors; md5/size as published (None: none published)."""

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    size: int | None = None
    page: str = ""  # where a person can get it by hand (shown in errors)

    def where(self) -> str:
        return self.page or (self.urls[0] if self.urls else "its publisher")


@dataclasses.dataclass(frozen=True)
class FetchOptions:
    """How hard to try. `retries` counts consecutive attempts on one URL that made no progress."""

    retries: int = 5
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    max_backoff: float = 60.0
    connect_timeout: float = 30.0
    read_timeout: float = 60.0  # seconds without a byte before an attempt fails
    chunk_bytes: int = 1 << 16  # a cut connection loses at most the chunk being read
    progress: bool = True


class ChecksumError(DataError):
    """A file's size or md5 differs from the published one."""


class _Retryable(Exception):
    """A transient failure (dropped connection, timeout, 5xx): try the same URL again."""


class _UrlFailed(Exception):
    """This URL cannot deliver the file (404, a web page instead of the file): move to the next one."""


# Section: verification.


def md5sum(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: str | Path, archive: Archive) -> dict[str, Any]:
    """Check size then md5 against the published values. Returns what was seen (for the manifest)."""
    path = Path(path)
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        raise ChecksumError(
            f"{archive.name}: size mismatch, expected {archive.size:,} bytes, got {size:,} ({path})."
        )
    md5 = md5sum(path)
    if archive.md5 is not None and md5 != archive.md5:
        raise ChecksumError(f"{archive.name}: md5 mismatch, expected {archive.md5}, got {md5} ({path}).")
    return {"name": archive.name, "size": size, "md5": md5, "verified": archive.md5 is not None}


def use_local(folder: str | Path, archive: Archive) -> tuple[Path, dict[str, Any]]:
    """An archive the user already has (the offline path): same checks, no network, file never deleted."""
    path = Path(folder) / archive.name
    if not path.is_file():
        md5 = f" (md5 {archive.md5})" if archive.md5 else ""
        raise DataError(
            f"data.archives = {str(folder)!r} has no {archive.name}; get it from {archive.where()}{md5} "
            "and put it there, or set data.archives: null to download it."
        )
    try:
        return path, verify(path, archive)
    except ChecksumError as e:
        raise ChecksumError(f"{e} The file in data.archives was left in place: replace it.") from None


# Section: downloading.


def fetch(
    archive: Archive, folder: str | Path, options: FetchOptions | None = None, session: Any = None
) -> tuple[Path, dict[str, Any]]:
    """Download `archive` into folder (verified). Returns (path, what was seen); a verified copy is reused."""
    import requests

    options = options or FetchOptions()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / archive.name
    if final.is_file():
        try:
            return final, {**verify(final, archive), "path": str(final.resolve())}
        except ChecksumError:
            final.unlink()  # our own cache: a bad copy is fetched again
    part = folder / f"{archive.name}.part"
    if session is not None:
        return _fetch_any(session, archive, part, final, options)
    with requests.Session() as own:
        return _fetch_any(own, archive, part, final, options)


def _fetch_any(
    session: requests.Session, archive: Archive, part: Path, final: Path, options: FetchOptions
) -> tuple[Path, dict[str, Any]]:
    """Try the URLs in order; the first verified download wins."""
    failures: list[str] = []
    deleted = False
    for url in archive.urls:
        try:
            _fetch_url(session, url, part, archive, options)
            seen = verify(part, archive)
        except ChecksumError as e:
            part.unlink(missing_ok=True)  # a wrong file is never resumed or kept
            failures.append(f"{url}: {e}")
            deleted = True
            continue
        except _UrlFailed as e:
            failures.append(f"{url}: {e}")
            continue
        except OSError as e:
            raise DataError(
                f"cannot write {part}: {e.strerror or e}; free disk space or fix the folder."
            ) from None
        os.replace(part, final)
        return final, {**seen, "url": url, "path": str(final.resolve())}
    raise DataError(
        f"could not download {archive.name} ({'; '.join(failures)})"
        + ("; the bad file was deleted" if deleted else "")
        + f". Get it by hand from {archive.where()} into a folder and set data.archives to that folder."
    )


def _sleep_before(attempt: int, options: FetchOptions, sleep: Callable[[float], None]) -> None:
    if attempt:
        sleep(min(options.max_backoff, options.backoff * 2 ** (attempt - 1)))


def _fetch_url(
    session: requests.Session, url: str, part: Path, archive: Archive, options: FetchOptions
) -> None:
    """Fill `part` from url, resuming; retries transient failures while they make progress."""
    attempt, last = 0, None
    high = part.stat().st_size if part.exists() else 0
    while attempt < options.retries:
        _sleep_before(attempt, options, time.sleep)
        try:
            _attempt(session, url, part, archive, options)
            return
        except _Retryable as e:
            last = e
        # A flaky link that keeps delivering new bytes is not out of retries; a restart that only
        # re-fetches bytes already seen once (high-water mark) is no progress.
        size = part.stat().st_size if part.exists() else 0
        attempt = 1 if size > high else attempt + 1
        high = max(high, size)
    raise _UrlFailed(f"gave up after {options.retries} attempts without progress ({last})")


def _attempt(
    session: requests.Session, url: str, part: Path, archive: Archive, options: FetchOptions
) -> None:
    import requests

    start = part.stat().st_size if part.exists() else 0
    if archive.size is not None and start >= archive.size:
        if start > archive.size:
            part.unlink()  # longer than the real file: not a prefix of it
            raise _Retryable(f"partial file was {start:,} bytes, more than the expected {archive.size:,}")
        return  # already complete; the caller verifies it
    try:
        with _open(session, url, start, archive, options) as resp:
            if resp.status_code == 416:
                if archive.size is None:
                    return  # nothing past what we hold: complete (verification decides)
                part.unlink()
                raise _Retryable("the server refused to resume; restarting from the first byte")
            start = _resume_offset(resp, part, start)
            _stream(resp, part, start, archive, options)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
        raise _Retryable(f"{type(e).__name__}: {e}") from None
    except requests.RequestException as e:
        raise _UrlFailed(f"{type(e).__name__}: {e}") from None


def _open(
    session: requests.Session, url: str, start: int, archive: Archive, options: FetchOptions
) -> requests.Response:
    """GET with a Range header; follows at most two HTML confirmation pages (Google Drive)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    timeout = (options.connect_timeout, options.read_timeout)
    for _ in range(3):
        resp = session.get(url, headers=headers, stream=True, timeout=timeout)
        if resp.status_code in _RETRY_STATUS:
            resp.close()
            raise _Retryable(f"HTTP {resp.status_code}")
        if resp.status_code == 416 and start:
            return resp  # asked past the end: the caller decides whether that means complete
        if resp.status_code >= 400:
            resp.close()
            raise _UrlFailed(f"HTTP {resp.status_code}")
        if not _is_web_page(resp, archive):
            return resp
        page = resp.text
        resp.close()
        next_url = _confirm_url(page, resp.url, resp.cookies)
        if next_url is None:
            raise _UrlFailed(
                "the server sent a web page instead of the file (a Google Drive quota or sign-in page?)"
            )
        url = next_url
    raise _UrlFailed("too many confirmation pages")


def _is_web_page(resp: requests.Response, archive: Archive) -> bool:
    kind = resp.headers.get("Content-Type", "")
    return kind.startswith("text/html") and not archive.name.endswith((".html", ".htm"))


def _resume_offset(resp: requests.Response, part: Path, start: int) -> int:
    """Where the body starts in the file: `start` for a matching 206, 0 for a 200 (the whole file again)."""
    if not start:
        return 0
    if resp.status_code == 206:
        match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == start:
            return start
        part.unlink()
        raise _Retryable("the server answered another byte range; restarting from the first byte")
    part.unlink()  # the server ignored the Range request and sends the whole file
    return 0


def _server_total(resp: requests.Response, start: int) -> int | None:
    """The whole file's size as the server states it (Content-Range total, else start + Content-Length)."""
    match = re.match(r"bytes \d+-\d+/(\d+)", resp.headers.get("Content-Range", ""))
    if resp.status_code == 206 and match:
        return int(match.group(1))
    length = resp.headers.get("Content-Length", "")
    return start + int(length) if length.isdigit() else None


def _expected_total(resp: requests.Response, start: int, archive: Archive) -> int | None:
    """Bytes the finished file must have; a server announcing another size is refused before any byte."""
    served = _server_total(resp, start)
    if archive.size is not None and served is not None and served != archive.size:
        raise ChecksumError(
            f"{archive.name}: size mismatch, expected {archive.size:,} bytes, the server has {served:,}."
        )
    return archive.size if archive.size is not None else served


def _stream(resp: requests.Response, part: Path, start: int, archive: Archive, options: FetchOptions) -> None:
    from tqdm import tqdm

    total = _expected_total(resp, start, archive)
    written = start
    bar = tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=archive.name,
        disable=not options.progress,
        mininterval=0.5,
    )
    with bar, open(part, "ab") as fh:
        for chunk in resp.iter_content(chunk_size=options.chunk_bytes):
            fh.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
            if archive.size is not None and written > archive.size:
                raise ChecksumError(
                    f"{archive.name}: size mismatch, expected {archive.size:,} bytes, the server sent more."
                )
    if total is not None and written < total:
        raise _Retryable(f"connection closed at {written:,} of {total:,} bytes")


# Section: Google Drive confirmation pages.


class _FormParser(html.parser.HTMLParser):
    """Collects the first form's action and hidden inputs, and any `confirm=` download link."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.link: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action, self._in_form = a.get("action", ""), True
        elif tag == "input" and self._in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "a" and "confirm=" in a.get("href", "") and self.link is None:
            self.link = a["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _confirm_url(page: str, base: str, cookies: Any) -> str | None:
    """The URL behind Drive's 'download anyway' button, or None when the page offers none."""
    parser = _FormParser()
    parser.feed(page)
    if parser.action and "confirm" in parser.fields:
        return f"{urljoin(base, parser.action)}?{urlencode(parser.fields)}"
    if parser.link:
        return urljoin(base, parser.link)
    # Older Drive pages: the token is in a download_warning cookie.
    for name, value in cookies.items():
        if name.startswith("download_warning"):
            sep = "&" if "?" in base else "?"
            return f"{base}{sep}confirm={value}"
    return None
