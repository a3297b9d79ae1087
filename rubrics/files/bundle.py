"""A bundle: the `.zip`, `.tar`, `.tar.gz` or `.tgz` uploaded with responses (or holding
them), whose files the responses name by relative path (`{"file": {"path": "out/memo.docx"}}`).

`Bundle(upload, name=...)` reads the archive's table of contents and refuses the whole bundle
(`BundleRefused`, naming the member) when it is not an archive, is a zip bomb (the limits of
`rubrics.uploads.check_zip`, with the ASSAY_BUNDLE_MAX_* settings), holds more than
ASSAY_BUNDLE_MAX_MEMBERS members or unpacks to more than ASSAY_BUNDLE_MAX_UNPACKED_BYTES, or
holds a symlink, a hard link, a device, a FIFO, a sparse or encrypted member, an absolute
path, a `..` or the same path twice. `read(path)` then answers one file at a time, in memory:
nothing is ever extracted to disk (a `.tar.gz` is decompressed, within those limits, into a
spooled temporary file holding the tar stream itself, so members can be read in any order).

Paths are normalised (`./a/b`, `a//b` and `a\\b` are `a/b`) and case-sensitive. A path that is
absolute or climbs out with `..`, names no member, or names a member over ASSAY_FILE_MAX_BYTES
is `FileRefused` naming it (a missing path also lists a few close names).
"""

from __future__ import annotations

import difflib
import gzip
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib

from django.conf import settings

from rubrics import uploads
from rubrics.files.sniff import FileRefused, safe_name

RESPONSES_NAME = "responses.jsonl"
RESPONSES_SUFFIXES = (".jsonl", ".parquet")
SPOOL_IN_MEMORY = 64 * 1024 * 1024  # a decompressed .tar.gz up to this stays in memory
SUGGESTED_MISSES = 50  # close names are looked for on this many misses; then just the path
_DRIVE = re.compile(r"^[A-Za-z]:")


class BundleRefused(FileRefused):
    """A bundle refused whole; `status` is 413 when it is over a size limit."""

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.status = status


def archive_kind(head: bytes) -> str | None:
    """zip, gzip or tar from a file's first bytes (at least 262), or None."""
    if head.startswith((uploads.ZIP_MAGIC, b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def normalise(path: str) -> str:
    """The member path `path` names; FileRefused when it is empty, absolute or leaves the
    bundle. Backslashes are separators; `.` and empty segments are dropped."""
    text = path.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise FileRefused(
            f"'{_shown(path)}' is an absolute path: name files by their path inside the bundle."
        )
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise FileRefused(f"'{_shown(path)}' leaves the bundle ('..'): paths stay inside it.")
    if not parts:
        raise FileRefused("an empty path names no file in the bundle.")
    return "/".join(parts)


def _shown(path: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in path)
    return text if len(text) <= 200 else text[:197] + "..."


class Bundle:
    """An uploaded archive, open for reading members by path. Keep `upload` open while the
    bundle is in use; `close()` (or `with`) releases what the bundle holds."""

    def __init__(self, upload, *, name: str = "bundle"):
        self.name = safe_name(name)
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._spool = None
        self._index: dict[str, object] = {}  # normalised path -> ZipInfo or TarInfo
        self._sizes: dict[str, int] = {}
        self._lower: dict[str, str] | None = None
        self._misses = 0
        uploads.check_size(
            upload,
            name=self.name,
            limit=settings.BUNDLE_MAX_BYTES,
            setting="ASSAY_BUNDLE_MAX_BYTES",
            what="bundles",
        )
        kind = archive_kind(uploads.head_of(upload, 512))
        try:
            if kind == "zip":
                self._open_zip(upload)
            elif kind == "tar":
                self._open_tar(upload)
            elif kind == "gzip":
                self._open_tar(self._gunzip(upload))
            else:
                raise BundleRefused(
                    f"'{self.name}' is not a bundle: send a .zip, .tar, .tar.gz or .tgz archive."
                )
        except uploads.UploadRefused as exc:
            self.close()
            raise BundleRefused(exc.text, status=exc.status) from None
        except BundleRefused:
            self.close()
            raise

    # --- opening ----------------------------------------------------------------------

    def _add(self, raw_name: str, entry, size: int) -> None:
        try:
            path = normalise(raw_name)
        except FileRefused as exc:
            raise BundleRefused(f"'{self.name}' holds {exc}") from None
        if path in self._index:
            raise BundleRefused(f"'{self.name}' holds '{_shown(path)}' twice.")
        self._index[path] = entry
        self._sizes[path] = size

    def _open_zip(self, upload) -> None:
        try:
            self._zip = zipfile.ZipFile(upload)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise BundleRefused(f"'{self.name}' is not a readable zip archive ({exc}).") from None
        members = uploads.check_zip(
            self._zip,
            name=self.name,
            what="a bundle",
            plural="bundles",
            limits=uploads.bundle_limits(),
        )
        for info in members:
            mode = info.external_attr >> 16
            if info.is_dir() or stat.S_ISDIR(mode):
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no type (zipfile's own)
                raise BundleRefused(
                    f"'{self.name}' holds '{_shown(info.filename)}', which is a link or a "
                    "device, not a file: bundles hold plain files only."
                )
            if info.flag_bits & 0x1:
                raise BundleRefused(
                    f"'{self.name}' holds '{_shown(info.filename)}' encrypted: send the bundle "
                    "without a password."
                )
            self._add(info.filename, info, info.file_size)

    def _gunzip(self, upload):
        """The tar inside a .tar.gz, decompressed into a spooled temporary file within the
        bundle limits (and the expansion ratio: a gzip bomb stops early)."""
        compressed = uploads.size_of(upload)
        limit = settings.BUNDLE_MAX_UNPACKED_BYTES + 1024 * settings.BUNDLE_MAX_MEMBERS
        ratio_cap = max(1024 * 1024, compressed * settings.BUNDLE_MAX_RATIO)
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        upload.seek(0)
        written = 0
        try:
            with gzip.GzipFile(fileobj=upload, mode="rb") as stream:
                while chunk := stream.read(1024 * 1024):
                    written += len(chunk)
                    if written > limit:
                        raise BundleRefused(
                            f"'{self.name}' unpacks to more than {uploads.megabytes(limit)} "
                            "(ASSAY_BUNDLE_MAX_UNPACKED_BYTES).",
                            status=413,
                        )
                    if written > ratio_cap:
                        raise BundleRefused(
                            f"'{self.name}' expands more than {settings.BUNDLE_MAX_RATIO} times "
                            "(ASSAY_BUNDLE_MAX_RATIO). It looks like a gzip bomb."
                        )
                    self._spool.write(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise BundleRefused(f"'{self.name}' is not readable gzip ({exc}).") from None
        self._spool.seek(0)
        if archive_kind(self._spool.read(512)) != "tar":
            raise BundleRefused(f"'{self.name}' is gzip but holds no tar archive.")
        self._spool.seek(0)
        return self._spool

    def _open_tar(self, fileobj) -> None:
        fileobj.seek(0)
        try:
            self._tar = tarfile.open(fileobj=fileobj, mode="r:")  # noqa: SIM115
            count = 0
            total = 0
            while (member := self._tar.next()) is not None:
                count += 1
                if count > settings.BUNDLE_MAX_MEMBERS:
                    raise BundleRefused(
                        f"'{self.name}' holds more than {settings.BUNDLE_MAX_MEMBERS:,} members; "
                        "bundles of at most that many are accepted (ASSAY_BUNDLE_MAX_MEMBERS)."
                    )
                if member.isdir():
                    continue
                if not member.isreg() or member.issparse():
                    what = (
                        "a symbolic link"
                        if member.issym()
                        else "a hard link"
                        if member.islnk()
                        else "a device or FIFO"
                        if member.isdev()
                        else "not a plain file"
                    )
                    raise BundleRefused(
                        f"'{self.name}' holds '{_shown(member.name)}', which is {what}: "
                        "bundles hold plain files only."
                    )
                total += member.size
                if total > settings.BUNDLE_MAX_UNPACKED_BYTES:
                    raise BundleRefused(
                        f"'{self.name}' unpacks to more than "
                        f"{uploads.megabytes(settings.BUNDLE_MAX_UNPACKED_BYTES)} "
                        "(ASSAY_BUNDLE_MAX_UNPACKED_BYTES).",
                        status=413,
                    )
                self._add(member.name, member, member.size)
        except BundleRefused:
            raise
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise BundleRefused(f"'{self.name}' is not a readable tar archive ({exc}).") from None
        if not self._index and count == 0:
            raise BundleRefused(f"'{self.name}' is an empty archive.")

    # --- reading ----------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """The files the bundle holds, by normalised path."""
        return sorted(self._index)

    def size(self, path: str) -> int:
        return self._sizes[normalise(path)]

    def read(self, path: str, *, limit: int | None = None) -> bytes:
        """The bytes of the file at `path`; FileRefused naming it when the path is absolute,
        leaves the bundle, names nothing, or names a file over `limit` (FILE_MAX_BYTES)."""
        key = normalise(path)
        entry = self._index.get(key)
        if entry is None:
            raise FileRefused(self._missing(key))
        limit = settings.FILE_MAX_BYTES if limit is None else limit
        size = self._sizes[key]
        if size > limit:
            raise FileRefused(
                f"'{_shown(key)}' in the bundle is {uploads.megabytes(size)}; files may be at "
                f"most {uploads.megabytes(limit)} (ASSAY_FILE_MAX_BYTES)."
            )
        try:
            if self._zip is not None:
                with self._zip.open(entry) as handle:
                    data = handle.read(limit + 1)
            else:
                handle = self._tar.extractfile(entry)
                data = handle.read(limit + 1) if handle is not None else b""
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise FileRefused(
                f"'{_shown(key)}' in the bundle '{self.name}' cannot be read ({exc})."
            ) from None
        if len(data) > limit:  # a zip member larger than its entry says
            raise FileRefused(f"'{_shown(key)}' in the bundle is larger than it declares.")
        return data

    def _missing(self, key: str) -> str:
        message = f"no file '{_shown(key)}' in the bundle '{self.name}'"
        self._misses += 1
        if self._misses > SUGGESTED_MISSES or not self._index:
            return message + "."
        if self._lower is None:
            self._lower = {p.lower(): p for p in self._index}
        close = []
        if key.lower() in self._lower:
            close.append(self._lower[key.lower()])  # paths are case-sensitive
        close += [
            p
            for p in difflib.get_close_matches(key, self._index.keys(), n=3, cutoff=0.6)
            if p not in close
        ]
        if close:
            return message + " (close names: " + ", ".join(f"'{_shown(p)}'" for p in close) + ")."
        return message + f" ({len(self._index):,} files in it, none with a close name)."

    def responses_member(self) -> str | None:
        """The responses file a bundle holds: `responses.jsonl`, or else the one .jsonl or
        .parquet file at its top; None when it holds none. BundleRefused when several files
        at the top could be it."""
        if RESPONSES_NAME in self._index:
            return RESPONSES_NAME
        top = [p for p in self._index if "/" not in p and p.lower().endswith(RESPONSES_SUFFIXES)]
        if len(top) > 1:
            raise BundleRefused(
                f"'{self.name}' holds {len(top)} responses files at its top "
                f"({', '.join(sorted(top)[:5])}): name the one to import {RESPONSES_NAME}."
            )
        return top[0] if top else None

    def close(self) -> None:
        for thing in (self._zip, self._tar, self._spool):
            if thing is not None:
                thing.close()
        self._zip = self._tar = self._spool = None

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
