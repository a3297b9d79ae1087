"""Files stored by content: the SHA-256 of the bytes is the file's name in Django's default
storage (``files/ab/abcdef…``), so the same file is stored once however many responses,
tasks or projects carry it, and a changed file is a new one. Storage is the filesystem under
ASSAY_MEDIA_DIR by default, an S3-compatible bucket through django-storages in production
(README "File storage"); nothing is under a public URL. A project holds a file through a
`StoredFile` row; `rubrics.views.file_view` serves it to the project's members.

Every file is sniffed from its bytes (`sniff`), refused over FILE_MAX_BYTES, and images are
re-encoded (`images.reencode`: metadata dropped, scaled, Pillow's bomb guard on) before they
are hashed and stored, so what is stored, shown and sent to a judge is the re-encoded copy.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import json
import re
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from rubrics.files import convert, images
from rubrics.files.sniff import IMAGE_KINDS, MIME, FileRefused, safe_name, sniff

SHA256 = re.compile(r"^[0-9a-f]{64}$")
DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w-]+=[\w.+-]+)*);base64,", re.I)


@dataclass(frozen=True)
class FileRef:
    """A stored file as a message part names it: its hash, what it is, and the name it was
    sent under (sanitised)."""

    sha256: str
    kind: str
    name: str
    size: int

    @property
    def is_image(self) -> bool:
        return self.kind in IMAGE_KINDS

    @property
    def mime(self) -> str:
        # A reference file stored before files were sniffed may be of no kind Assay reads
        # ("other"): it is only ever served as a download.
        return MIME.get(self.kind, "application/octet-stream")

    def as_json(self) -> dict:
        return {"sha256": self.sha256, "filename": self.name, "kind": self.kind, "size": self.size}


def path_of(sha256: str) -> str:
    return f"files/{sha256[:2]}/{sha256}"


def limit() -> int:
    return settings.FILE_MAX_BYTES


def prepare(
    data: bytes, *, name: str, image: bool = False
) -> tuple[bytes, str, int | None, int | None]:
    """The bytes to store for `data` (images re-encoded), their kind, and an image's size in
    pixels; FileRefused naming the file when it is empty, too large, not a kind Assay reads,
    or (with `image`) not an image."""
    label = safe_name(name)
    if not data:
        raise FileRefused(f"'{label}' is empty.")
    if len(data) > limit():
        raise FileRefused(
            f"'{label}' is {len(data) / 1048576:.1f} MB; files may be at most "
            f"{limit() / 1048576:.1f} MB (ASSAY_FILE_MAX_BYTES)."
        )
    kind = sniff(data, name=label).kind
    if image and kind not in IMAGE_KINDS:
        raise FileRefused(f"'{label}' is a {kind} file, not an image: send it as a file part.")
    if kind not in IMAGE_KINDS:
        return data, kind, None, None
    image = images.reencode(data, name=label)
    kind = "png" if image.mime == "image/png" else "jpeg"
    return image.data, kind, image.width, image.height


def put(project, data: bytes, *, name: str, image: bool = False) -> FileRef:
    """Store `data` for `project` (idempotent: the same bytes are one file) and name it; with
    `image`, only an image is taken."""
    from rubrics.models import StoredFile

    sha = hashlib.sha256(data).hexdigest()
    # An image the project holds, sent back byte for byte (an export of its own read in
    # again), is that file: it was re-encoded when it was stored, and re-encoding is not
    # idempotent (a JPEG saved again is other bytes), so doing it again would give the same
    # picture a new hash and make the same prompt look changed. Only the project's own
    # files count: another project's would tell whether it holds an image.
    row = StoredFile.objects.filter(project=project, sha256=sha, kind__in=IMAGE_KINDS).first()
    if row is None:
        data, kind, width, height = prepare(data, name=name, image=image)
        sha = hashlib.sha256(data).hexdigest()
    else:
        kind = row.kind
    path = path_of(sha)
    if not default_storage.exists(path):
        default_storage.save(path, ContentFile(data))
    if row is None:
        StoredFile.objects.get_or_create(
            project=project,
            sha256=sha,
            defaults={"kind": kind, "size": len(data), "width": width, "height": height},
        )
    shown = safe_name(name) if name and name != "file" else f"{sha[:12]}.{kind}"
    return FileRef(sha, kind, shown, len(data))


def held(project, sha256: str) -> FileRef | None:
    """The project's file of that hash (named by its hash), or None."""
    from rubrics.models import StoredFile

    row = StoredFile.objects.filter(project=project, sha256=sha256.lower()).first()
    if row is None:
        return None
    return FileRef(row.sha256, row.kind, f"{row.sha256[:12]}.{row.kind}", row.size)


def read(sha256: str) -> bytes:
    """The stored bytes of a file; FileNotFoundError when the storage lost them."""
    if not SHA256.match(sha256):
        raise FileNotFoundError(sha256)
    with default_storage.open(path_of(sha256), "rb") as handle:
        return handle.read()


def decode_data_uri(uri: str, *, name: str) -> bytes:
    """The bytes of a base64 `data:` URI; FileRefused saying what is wrong with it. The
    declared media type is not trusted: the bytes are sniffed when stored."""
    match = DATA_URI.match(uri)
    if not match:
        raise FileRefused(
            f"'{safe_name(name)}': give a base64 data: URI (data:image/png;base64,...)."
        )
    body = uri[match.end() :]
    if len(body) > limit() * 4 // 3 + 8:
        raise FileRefused(
            f"'{safe_name(name)}' is over {limit() / 1048576:.1f} MB (ASSAY_FILE_MAX_BYTES)."
        )
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise FileRefused(f"'{safe_name(name)}': the data: URI is not valid base64.") from None


def data_uri(ref: FileRef) -> str:
    return f"data:{ref.mime};base64,{base64.b64encode(read(ref.sha256)).decode('ascii')}"


# Bump when a conversion changes what it reads out of a file: stored conversions of the old
# version are then made again.
CONVERSION_VERSION = 1


def converted(ref: FileRef) -> convert.Converted:
    """What judges, checks and pages read of a stored document (text, sheets, page count, what
    was cut): converted once per file and kept beside it in storage
    (``converted/v1/ab/abcdef….json``), then read back; images convert to nothing."""
    return _converted(ref.sha256, ref.kind, ref.name)


@functools.lru_cache(maxsize=128)
def _converted(sha256: str, kind: str, name: str) -> convert.Converted:
    path = f"converted/v{CONVERSION_VERSION}/{sha256[:2]}/{sha256}.json"
    try:
        with default_storage.open(path, "rb") as handle:
            raw = json.loads(handle.read())
        raw["sheets"] = [
            convert.Sheet(s["name"], [[tuple(c) for c in row] for row in s["rows"]])
            for s in raw["sheets"]
        ]
        return convert.Converted(**raw)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    out = convert.convert(read(sha256), name=name)
    if not default_storage.exists(path):
        default_storage.save(path, ContentFile(json.dumps(dataclasses.asdict(out)).encode()))
    return out


def exists(sha256: str) -> bool:
    """Whether the storage still has the file's bytes."""
    return bool(SHA256.match(sha256)) and default_storage.exists(path_of(sha256))
