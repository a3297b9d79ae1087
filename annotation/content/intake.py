"""Taking the images and files of an incoming episode into a project: a part names its file
by a base64 `data:` URI, by a relative path inside the bundle (.zip or .tar) uploaded with
the responses, or as `sha256:<hash>` of a file the project already holds (an export read
back). `rubrics.files.parts.Intake` (which task messages use too) sniffs, checks and stores
each, once per import; a missing, oversized or mistyped file is a ContentError naming the
part and the file."""

from __future__ import annotations

from annotation.content.episode import ContentError, FileIntake
from rubrics.files import parts
from rubrics.files.sniff import safe_name
from rubrics.files.store import FileRef


class ProjectIntake(FileIntake):
    """Stores the files an episode carries for `project`; `bundle` (a
    `rubrics.files.bundle.Bundle`) answers relative paths. One intake serves a whole import:
    a file named again is stored once (`rubrics.files.parts.Intake`)."""

    def __init__(self, project, bundle=None):
        self.files = parts.Intake(project, bundle)

    def take(self, where: str, source: str, name: str, *, image: bool = False) -> FileRef:
        try:
            return self.files.take(where, source, name, image=image)
        except parts.PartRefused as exc:
            raise ContentError(exc.field, exc.message) from None


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
