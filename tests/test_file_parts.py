"""Images and files as message parts (annotation.content, rubrics.files.store): taken from
data: URIs and the project's own files, stored once by content, kept as hashes in the stored
episode, read back equal, refused with the part named, and served to members only."""

from __future__ import annotations

import base64
import hashlib
import io

import openpyxl
import pytest
from django.test import Client
from PIL import Image

from annotation.content import render
from annotation.content.episode import ContentError, Episode
from annotation.content.intake import ProjectIntake
from rubrics.files import store
from rubrics.models import StoredFile
from tests import factories


def png(color: str = "red", size=(40, 30), **info) -> bytes:
    out = io.BytesIO()
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    for key, value in info.items():
        meta.add_text(key, value)
    Image.new("RGB", size, color).save(out, "PNG", pnginfo=meta)
    return out.getvalue()


def xlsx(value: float) -> bytes:
    book = openpyxl.Workbook()
    book.active["A1"], book.active["B1"] = "Closing balance", value
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def episode_with(*parts) -> dict:
    return {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read the chart."}, *parts]},
            {"role": "assistant", "content": "Revenue doubled."},
        ]
    }


@pytest.fixture
def project(db):
    return factories.make_project(owner=factories.make_user())


def test_an_image_and_a_file_are_stored_by_content_and_read_back_equal(project):
    sheet = xlsx(1_250_000)
    episode = Episode.parse(
        episode_with(
            {"type": "image_url", "image_url": {"url": uri(png(comment="<script>x</script>"))}},
            {"type": "file", "file": {"file_data": uri(sheet, "x/y"), "filename": "../debt.xlsx"}},
        ),
        files=ProjectIntake(project),
    )
    image, book = [ref for _, ref in episode.files()]
    assert image.is_image and image.kind == "jpeg"  # re-encoded; the PNG comment is gone
    assert b"<script>" not in store.read(image.sha256)
    assert hashlib.sha256(store.read(image.sha256)).hexdigest() == image.sha256
    assert (book.kind, book.name, book.sha256) == (
        "xlsx",
        "debt.xlsx",
        hashlib.sha256(sheet).hexdigest(),
    )
    assert StoredFile.objects.filter(project=project).count() == 2
    stored = episode.stored()
    assert stored["messages"][0]["content"][1]["image_url"]["url"] == f"sha256:{image.sha256}"
    assert Episode.load(stored) == episode
    # The judge's text names each file by hash, so a changed file is a changed prompt.
    text = render.for_judge(episode).text
    assert f"[file: debt.xlsx (xlsx, sha256 {book.sha256[:16]})]" in text
    again = Episode.parse(
        episode_with(
            {"type": "file", "file": {"file_data": uri(xlsx(1_200_000)), "filename": "debt.xlsx"}}
        ),
        files=ProjectIntake(project),
    )
    assert (
        render.for_judge(again).text
        != render.for_judge(
            Episode.parse(
                episode_with(
                    {"type": "file", "file": {"file_data": uri(sheet), "filename": "debt.xlsx"}}
                ),
                files=ProjectIntake(project),
            )
        ).text
    )
    # The same bytes are one stored file, however often they come.
    assert StoredFile.objects.filter(project=project).count() == 3
    assert store.converted(book).sheets[0].rows[0] == [("A1", "Closing balance"), ("B1", "1250000")]


def test_a_file_the_project_holds_is_named_by_its_hash(project):
    ref = store.put(project, xlsx(5), name="five.xlsx")
    episode = Episode.parse(
        episode_with({"type": "file", "file": {"sha256": ref.sha256, "filename": "again.xlsx"}}),
        files=ProjectIntake(project),
    )
    assert [r.sha256 for _, r in episode.files()] == [ref.sha256]
    other = factories.make_project(owner=factories.make_user())
    with pytest.raises(ContentError) as refused:
        Episode.parse(
            episode_with({"type": "file", "file": {"sha256": ref.sha256}}),
            files=ProjectIntake(other),
        )
    assert refused.value.field == "messages[0].content[1].file"
    assert "no file with hash" in str(refused.value)


@pytest.mark.parametrize(
    ("part", "field", "words"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            "image_url.url",
            "does not fetch",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}},
            "image_url.url",
            "not valid base64",
        ),
        (
            {
                "type": "image_url",
                "image_url": {"url": uri(b"<svg onload=alert(1)></svg>", "image/svg+xml")},
            },
            "image_url.url",
            "SVG",
        ),
        (
            {"type": "image_url", "image_url": {"url": uri(xlsx(1))}},
            "image_url.url",
            "not an image",
        ),
        ({"type": "file", "file": {"file_data": uri(b"<html><script>x</script>")}}, "file", "HTML"),
        ({"type": "file", "file": {"path": "out/memo.docx"}}, "file", "no bundle"),
        ({"type": "file", "file": {}}, "file", "give file_data"),
        ({"type": "video", "video": {}}, "type", "unknown part type"),
        ({"type": "image_url", "image_url": {"url": uri(b"")}}, "image_url.url", "empty"),
    ],
)
def test_a_bad_part_is_refused_naming_it(project, part, field, words):
    with pytest.raises(ContentError) as refused:
        Episode.parse(episode_with(part), files=ProjectIntake(project))
    assert refused.value.field == f"messages[0].content[1].{field}"
    assert words in str(refused.value)
    assert not StoredFile.objects.exists()


def test_parts_are_refused_where_no_files_are_taken(project):
    with pytest.raises(ContentError) as refused:
        Episode.parse(episode_with({"type": "image_url", "image_url": {"url": uri(png())}}))
    assert "not taken here" in str(refused.value)


def test_a_file_over_the_limit_is_refused_before_it_is_stored(project, settings):
    settings.FILE_MAX_BYTES = 1000
    with pytest.raises(ContentError) as refused:
        Episode.parse(
            episode_with(
                {"type": "file", "file": {"file_data": uri(xlsx(1)), "filename": "big.xlsx"}}
            ),
            files=ProjectIntake(project),
        )
    assert "'big.xlsx'" in str(refused.value) and "ASSAY_FILE_MAX_BYTES" in str(refused.value)
    assert not StoredFile.objects.exists()


def test_members_read_a_file_and_no_one_else_does(personas):
    image = store.put(personas.project, png(), name="chart.png")
    sheet = store.put(personas.project, xlsx(3), name="s.xlsx")
    slug = personas.project.slug
    for user in (personas.annotator, personas.engineer):
        client = Client()
        client.force_login(user)
        shown = client.get(f"/p/{slug}/files/{image.sha256}/")
        assert shown.status_code == 200 and shown["Content-Type"] == "image/jpeg"
        assert "attachment" not in shown.get("Content-Disposition", "")
        # Sandboxed; it may only show itself (Chromium styles an image opened alone inline).
        policy = shown["Content-Security-Policy"]
        assert "sandbox" in policy and "default-src 'none'" in policy and "script" not in policy
        assert shown["X-Content-Type-Options"] == "nosniff"
        saved = client.get(f"/p/{slug}/files/{sheet.sha256}/?name=../../Debt%20schedule.xlsx")
        assert saved["Content-Type"] == "application/octet-stream"
        assert saved["Content-Disposition"] == 'attachment; filename="Debt schedule.xlsx"'
        assert b"".join(saved.streaming_content) == store.read(sheet.sha256)
    outsider = Client()
    outsider.force_login(personas.outsider)
    assert outsider.get(f"/p/{slug}/files/{image.sha256}/").status_code == 404
    member = Client()
    member.force_login(personas.author)
    assert member.get(f"/p/{slug}/files/{'0' * 64}/").status_code == 404
    assert member.get(f"/p/{slug}/files/not-a-hash/").status_code == 404
    # A file of another project is not this project's, though its bytes are stored.
    other = factories.make_project(owner=personas.admin)
    assert member.get(f"/p/{other.slug}/files/{image.sha256}/").status_code == 404
    admin = Client()
    admin.force_login(personas.admin)
    assert admin.get(f"/p/{other.slug}/files/{image.sha256}/").status_code == 404


def test_an_s3_bucket_is_the_store_when_one_is_named():
    """Settings only: this machine has no bucket (README "File storage" says how to use one)."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.STORAGES['default']))"
    )

    def default_storage_with(**env) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "assay.settings", **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    bucket = default_storage_with(
        ASSAY_S3_BUCKET="assay-files", ASSAY_S3_ENDPOINT_URL="http://minio.internal:9000"
    )
    assert bucket["BACKEND"] == "storages.backends.s3.S3Storage"
    assert bucket["OPTIONS"]["bucket_name"] == "assay-files"
    assert bucket["OPTIONS"]["endpoint_url"] == "http://minio.internal:9000"
    assert bucket["OPTIONS"]["default_acl"] == "private" and bucket["OPTIONS"]["querystring_auth"]
    assert default_storage_with()["BACKEND"] == "django.core.files.storage.FileSystemStorage"
