"""Image and file parts of a chat message, read and stored for a project: the one reader that
task messages (`rubrics.services.validate_messages`: the task editor and API, the task import,
the HealthBench import) and response episodes (`annotation.content.episode`, through
`annotation.content.intake`) share. One `Intake` serves one import or request.

An incoming part is OpenAI's shape: ``{"type": "image_url", "image_url": {"url": ...}}`` or
``{"type": "file", "file": {"file_data": ..., "filename": ...}}``. Its file is named by a
base64 ``data:`` URI, by ``sha256:<hash>`` of a file the project already holds (a stored part
read back, an export re-imported), or (responses only) by a relative path inside an uploaded
bundle. URLs are refused: Assay never fetches a file. The stored shape keeps the hash, kind,
size and sanitised name::

    {"type": "image_url", "image_url": {"url": "sha256:<h>"},
     "file": {"sha256": "<h>", "filename": "chart.png", "kind": "png", "size": 1234}}
    {"type": "file", "file": {"sha256": "<h>", "filename": "memo.docx", "kind": "docx", ...}}

Every problem is a PartRefused naming the field (``messages[1].content[2].image_url.url``),
which importers prefix with the line.
"""

from __future__ import annotations

import hashlib

from rubrics.files import store
from rubrics.files.bundle import normalise
from rubrics.files.sniff import FileRefused, safe_name
from rubrics.files.store import FileRef

FILE_TYPES = ("image_url", "file")
PART_TYPES = ("text", *FILE_TYPES)
MAX_TASK_FILES = 20  # image and file parts in one task's messages
URL_SCHEMES = ("http://", "https://", "ftp://", "file:")


class PartRefused(ValueError):
    """A part Assay will not take; `field` is its path, e.g. ``messages[1].content[0].file``."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def source_of(where: str, raw: dict) -> tuple[str, str, str]:
    """(field, source, name) of an incoming image_url or file part at `where`: what names its
    file (a data: URI, a bundle path or sha256:<hash>), and the name it was sent under."""
    kind = raw.get("type")
    meta = raw.get("file")
    if meta is not None and not isinstance(meta, dict):
        raise PartRefused(f"{where}.file", "must be an object")
    meta = meta or {}
    name = meta.get("filename") if isinstance(meta.get("filename"), str) else ""
    if kind == "image_url":
        image = raw.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        field = f"{where}.image_url.url"
    else:
        field = f"{where}.file"
        url = (
            meta.get("file_data")
            or meta.get("path")
            or (f"sha256:{meta['sha256']}" if isinstance(meta.get("sha256"), str) else None)
        )
    if not isinstance(url, str) or not url.strip():
        what = "image_url.url" if kind == "image_url" else "file_data, path or sha256"
        raise PartRefused(
            field, f"give {what}: a data: URI, a path in the bundle, or sha256:<hash>"
        )
    if url.strip().lower().startswith(URL_SCHEMES):
        raise PartRefused(
            field, "Assay does not fetch files from URLs: send a data: URI or a file in a bundle"
        )
    return field, url.strip(), name or name_of(url)


def name_of(source: str) -> str:
    if source.lower().startswith(("data:", "sha256:")):
        return "file"
    return source.replace("\\", "/").rsplit("/", 1)[-1]


def take(
    project, field: str, source: str, name: str, *, bundle=None, image: bool = False
) -> FileRef:
    """Store the file `source` names for `project` and name it; PartRefused at `field` when it
    is missing, oversized, mistyped (with `image`, not an image) or not held.
    `bundle.read(path)` answers bundle paths."""
    try:
        if source[:5].lower() == "data:":
            data = store.decode_data_uri(source, name=name)
            return store.put(project, data, name=name, image=image)
        if source[:7].lower() == "sha256:":
            sha = source[7:].strip().lower()
            if not store.SHA256.match(sha):
                raise PartRefused(field, "sha256: must be followed by 64 hex digits")
            ref = store.held(project, sha)
            if ref is None:
                # The whole hash: an import of another project's export says which file to add.
                raise PartRefused(
                    field,
                    f"no file with hash {sha} in this project: send the file itself "
                    "(a data: URI or a file in the bundle)",
                )
            shown = safe_name(name) if name and name != "file" else ref.name
            return FileRef(ref.sha256, ref.kind, shown, ref.size)
        if bundle is None:
            raise PartRefused(
                field,
                f"'{safe_name(source)}' names a file in a bundle, but no bundle (.zip or .tar) "
                "came with these files: send each as a data: URI",
            )
        return store.put(project, bundle.read(source), name=name, image=image)
    except FileRefused as exc:
        raise PartRefused(field, str(exc)) from None


class Intake:
    """Takes the files of one import or request into `project`; `bundle` (a
    `rubrics.files.bundle.Bundle`) answers relative paths.

    A file named again (the same bundle path, the same data: URI, the same hash) is read,
    checked and stored once, and later parts reuse its FileRef under their own names: a chart
    on a thousand prompts is decoded and re-encoded once. Files stored by an import that is
    then refused leave their StoredFile rows behind in nothing (the import's transaction rolls
    them back); their bytes may stay in storage, harmlessly, since storage is by content and
    unlisted."""

    def __init__(self, project, bundle=None):
        self.project = project
        self.bundle = bundle
        self._taken: dict[str, FileRef] = {}

    def take(self, where: str, source: str, name: str, *, image: bool = False) -> FileRef:
        key = _key(source)
        ref = self._taken.get(key)
        if ref is None:
            ref = take(self.project, where, source, name, bundle=self.bundle, image=image)
            self._taken[key] = ref
        shown = safe_name(name) if name and name != "file" else ref.name
        return ref if shown == ref.name else FileRef(ref.sha256, ref.kind, shown, ref.size)


def _key(source: str) -> str:
    """What names the same file twice: a data: URI by its digest (it may be megabytes), a
    bundle path normalised (./a/b is a/b), a hash in lower case."""
    if source[:5].lower() == "data:":
        return "data:" + hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    if source[:7].lower() == "sha256:":
        return source.strip().lower()
    try:
        return "path:" + normalise(source)
    except FileRefused:
        return "raw:" + source  # refused when taken, naming the part


def stored_part(ref: FileRef) -> dict:
    """The stored shape of a part carrying `ref`: an image_url part for an image, else a file."""
    if ref.is_image:
        return {
            "type": "image_url",
            "image_url": {"url": f"sha256:{ref.sha256}"},
            "file": ref.as_json(),
        }
    return {"type": "file", "file": ref.as_json()}


def read_part(files: Intake | None, where: str, raw: object) -> dict:
    """One part of a task message, checked and (for files) stored by `files`: its stored
    shape. Without `files`, image and file parts are refused."""
    if isinstance(raw, str):
        return {"type": "text", "text": raw}
    if not isinstance(raw, dict) or raw.get("type") not in PART_TYPES:
        kind = raw.get("type") if isinstance(raw, dict) else None
        raise PartRefused(
            f"{where}.type", f"unknown part type {kind!r}; one of {', '.join(PART_TYPES)}"
        )
    if raw["type"] == "text":
        if not isinstance(raw.get("text"), str):
            raise PartRefused(f"{where}.text", "a text part needs its text")
        return {"type": "text", "text": raw["text"]}
    if files is None:
        raise PartRefused(where, "images and files are not taken here; send text parts")
    field, source, name = source_of(where, raw)
    ref = files.take(field, source, name, image=raw["type"] == "image_url")
    if raw["type"] == "image_url" and not ref.is_image:
        raise PartRefused(
            field, f"'{ref.name}' is a {ref.kind} file, not an image: send it as a file part"
        )
    return stored_part(ref)


def read_content(files: Intake | None, where: str, content: list) -> list[dict]:
    """A message's list of parts, each read by `read_part`; PartRefused names the first bad one."""
    return [read_part(files, f"{where}[{k}]", raw) for k, raw in enumerate(content)]


def refs(content: object) -> list[FileRef]:
    """The files a stored message content carries, in order (none for a text)."""
    if not isinstance(content, list):
        return []
    out = []
    for part in content:
        meta = part.get("file") if isinstance(part, dict) else None
        if isinstance(meta, dict) and store.SHA256.match(str(meta.get("sha256", ""))):
            out.append(
                FileRef(
                    meta["sha256"],
                    str(meta.get("kind", "")),
                    str(meta.get("filename", "")),
                    int(meta.get("size") or 0),
                )
            )
    return out


def inline(part: dict) -> dict:
    """A stored image or file part in OpenAI's shape, its file's bytes inline as a data: URI
    (``image_url.url``; ``file.file_data`` and ``file.filename``): what judges are sent and
    HealthBench files carry. Any other part as it is. FileNotFoundError when the storage lost
    the file."""
    found = refs([part])
    if not found:
        return part
    ref = found[0]
    if part.get("type") == "image_url":
        return {"type": "image_url", "image_url": {"url": store.data_uri(ref)}}
    return {"type": "file", "file": {"filename": ref.name, "file_data": store.data_uri(ref)}}


def file_line(ref: FileRef) -> str:
    """How a judge's text names an image or file part (as annotation.content.render does)."""
    what = "image" if ref.is_image else "file"
    return f"[{what}: {ref.name} ({ref.kind}, sha256 {ref.sha256[:16]})]"


def text_of(content: object) -> str:
    """A stored message content as text: its text parts, and a line naming each file."""
    if not isinstance(content, list):
        return "" if content is None else str(content)
    lines = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            lines.append(str(part.get("text", "")))
    lines.extend(file_line(ref) for ref in refs(content))
    return "\n".join(lines)


def only_text(content: object) -> str:
    """The text of a stored message content, without the lines naming its files."""
    if not isinstance(content, list):
        return "" if content is None else str(content)
    return "\n".join(
        str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
    )
