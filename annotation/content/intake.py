"""Taking the images and files of an incoming episode into a project: a part names its file
by a base64 `data:` URI, by a relative path inside the bundle (.zip or .tar) uploaded with
the responses, or as `sha256:<hash>` of a file the project already holds (an export read
back). Each is sniffed, checked and stored by `rubrics.files.store`; a missing, oversized or
mistyped file is a ContentError naming the part and the file."""

from __future__ import annotations

from annotation.content.episode import ContentError, FileIntake
from rubrics.files import store
from rubrics.files.sniff import FileRefused, safe_name
from rubrics.files.store import FileRef


class ProjectIntake(FileIntake):
    """Stores the files an episode carries for `project`; `bundle` (a
    `rubrics.files.bundle.Bundle`) answers relative paths."""

    def __init__(self, project, bundle=None):
        self.project = project
        self.bundle = bundle

    def take(self, where: str, source: str, name: str) -> FileRef:
        try:
            if source[:5].lower() == "data:":
                return store.put(self.project, store.decode_data_uri(source, name=name), name=name)
            if source[:7].lower() == "sha256:":
                sha = source[7:].strip().lower()
                ref = store.held(self.project, sha) if store.SHA256.match(sha) else None
                if ref is None:
                    raise ContentError(
                        where,
                        f"no file with hash {sha[:12]} in this project: send the file itself "
                        "(a data: URI or a file in the bundle)",
                    )
                shown = safe_name(name) if name and name != "file" else ref.name
                return FileRef(ref.sha256, ref.kind, shown, ref.size)
            if self.bundle is None:
                raise ContentError(
                    where,
                    f"'{safe_name(source)}' names a file in a bundle, but no bundle (.zip or "
                    ".tar) came with these responses",
                )
            return store.put(self.project, self.bundle.read(source), name=name)
        except FileRefused as exc:
            raise ContentError(where, str(exc)) from None


class RequestIntake(ProjectIntake):
    """The files one request carries inline, for doors that take no bundle (the reward
    endpoints, try-it): base64 `data:` URIs, or `sha256:<hash>` of a file the project holds.
    A relative path is refused, naming the part: there is no bundle for it to name a file in."""

    def __init__(self, project, door: str = "this request"):
        super().__init__(project)
        self.door = door

    def take(self, where: str, source: str, name: str) -> FileRef:
        if not source.lower().startswith(("data:", "sha256:")):
            raise ContentError(
                where,
                f"'{safe_name(source)}' looks like a path in a bundle, but {self.door} takes "
                "no bundle: send the file inline as a base64 data: URI "
                "(data:image/png;base64,...) or as sha256:<hash> of a file the project holds",
            )
        return super().take(where, source, name)
