"""Taking the images and files of an incoming episode into a project: a part names its file
by a base64 `data:` URI, by a relative path inside the bundle (.zip or .tar) uploaded with
the responses, or as `sha256:<hash>` of a file the project already holds (an export read
back). `rubrics.files.parts.take` (which task messages use too) sniffs, checks and stores
each; a missing, oversized or mistyped file is a ContentError naming the part and the file."""

from __future__ import annotations

from annotation.content.episode import ContentError, FileIntake
from rubrics.files import parts
from rubrics.files.store import FileRef


class ProjectIntake(FileIntake):
    """Stores the files an episode carries for `project`; `bundle` (a
    `rubrics.files.bundle.Bundle`) answers relative paths."""

    def __init__(self, project, bundle=None):
        self.project = project
        self.bundle = bundle

    def take(self, where: str, source: str, name: str) -> FileRef:
        try:
            return parts.take(self.project, where, source, name, bundle=self.bundle)
        except parts.PartRefused as exc:
            raise ContentError(exc.field, exc.message) from None
