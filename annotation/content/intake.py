"""Taking the images and files of an incoming episode into a project: a part names its file
by a base64 `data:` URI, by a relative path inside the bundle (.zip or .tar) uploaded with
the responses, or as `sha256:<hash>` of a file the project already holds (an export read
back). `rubrics.files.parts.take` (which task messages use too) sniffs, checks and stores
each; a missing, oversized or mistyped file is a ContentError naming the part and the file."""

from __future__ import annotations

import hashlib

from annotation.content.episode import ContentError, FileIntake
from rubrics.files import parts
from rubrics.files.bundle import normalise
from rubrics.files.sniff import FileRefused, safe_name
from rubrics.files.store import FileRef


class ProjectIntake(FileIntake):
    """Stores the files an episode carries for `project`; `bundle` (a
    `rubrics.files.bundle.Bundle`) answers relative paths.

    One intake serves a whole import: a file named again (the same bundle path, the same
    data: URI, the same hash) is read, checked and stored once, and later parts reuse its
    FileRef under their own names. Files stored by an import that is then refused leave
    their StoredFile rows behind in nothing (the transaction rolls them back); their bytes
    may stay in storage, harmlessly, since storage is by content and unlisted."""

    def __init__(self, project, bundle=None):
        self.project = project
        self.bundle = bundle
        self._taken: dict[str, FileRef] = {}

    def take(self, where: str, source: str, name: str, *, image: bool = False) -> FileRef:
        key = _key(source)
        ref = self._taken.get(key)
        if ref is None:
            ref = self._take(where, source, name, image=image)
            self._taken[key] = ref
        shown = safe_name(name) if name and name != "file" else ref.name
        return ref if shown == ref.name else FileRef(ref.sha256, ref.kind, shown, ref.size)

    def _take(self, where: str, source: str, name: str, *, image: bool) -> FileRef:
        try:
            return parts.take(self.project, where, source, name, bundle=self.bundle, image=image)
        except parts.PartRefused as exc:
            raise ContentError(exc.field, exc.message) from None


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


class RequestIntake(ProjectIntake):
    """The files one request carries inline, for doors that take no bundle (the reward
    endpoints, try-it): base64 `data:` URIs, or `sha256:<hash>` of a file the project holds.
    A relative path is refused, naming the part: there is no bundle for it to name a file in."""

    def __init__(self, project, door: str = "this request"):
        super().__init__(project)
        self.door = door

    def take(self, where: str, source: str, name: str, *, image: bool = False) -> FileRef:
        if not source.lower().startswith(("data:", "sha256:")):
            raise ContentError(
                where,
                f"'{safe_name(source)}' looks like a path in a bundle, but {self.door} takes "
                "no bundle: send the file inline as a base64 data: URI "
                "(data:image/png;base64,...) or as sha256:<hash> of a file the project holds",
            )
        return super().take(where, source, name, image=image)
