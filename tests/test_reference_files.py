"""Reference answers with an attached file: upload in the browser and over the API, download
only by project members through a checked view, a size limit, a safe file name, and exports
that name the file by its SHA-256."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from grading.datasets import formats
from rubrics import services
from rubrics.files import store
from rubrics.models import ReferenceDeliverable, StoredFile
from rubrics.task_import import tasks_import
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n% a reference memo\n" + bytes(range(256))


@pytest.fixture
def task(personas):
    return factories.make_task(personas.project, "chest")


def upload(name: str = "memo.pdf", data: bytes = PDF) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/pdf")


def test_author_uploads_a_file_on_the_task_page_and_members_download_it(client, personas, task):
    client.force_login(personas.author)
    page = client.get(reverse("task", args=[personas.project.slug, "chest"]))
    assert b'enctype="multipart/form-data"' in page.content
    response = client.post(
        reverse("reference_add", args=[personas.project.slug, "chest"]),
        {"body": "**Call 911.**", "file": upload("Triage memo (final).pdf")},
    )
    assert response.status_code == 302
    reference = ReferenceDeliverable.objects.get(task=task)
    assert (reference.body, reference.file_name) == ("**Call 911.**", "Triage_memo_final.pdf")
    assert reference.file_sha256 == hashlib.sha256(PDF).hexdigest()
    assert reference.file_size == len(PDF)
    # A stored file of the project, by its hash, outside any URL the web server publishes.
    assert default_storage.exists(store.path_of(reference.file_sha256))
    assert reference.file_kind == "pdf"
    assert StoredFile.objects.filter(project=task.project, sha256=reference.file_sha256).exists()

    url = reverse("reference_file", args=[reference.pk])
    page = client.get(reverse("task", args=[personas.project.slug, "chest"]))
    assert url.encode() in page.content and b"Triage_memo_final.pdf" in page.content
    for user in (personas.admin, personas.annotator, personas.reviewer, personas.engineer):
        client.force_login(user)
        download = client.get(url)
        assert download.status_code == 200
        assert b"".join(download.streaming_content) == PDF
        assert download["Content-Disposition"] == 'attachment; filename="Triage_memo_final.pdf"'
        assert download["Content-Type"] == "application/octet-stream"
        assert download["X-Content-Type-Options"] == "nosniff"
        assert download["X-Content-SHA256"] == reference.file_sha256
    client.force_login(personas.outsider)
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def test_the_editor_shows_the_file_beside_the_rubric_and_uploads_from_there(client, personas, task):
    rubric = services.rubric_create(
        project=personas.project, task=task, title="Chest", user=personas.author
    )
    client.force_login(personas.author)
    editor = reverse("rubric", args=[rubric.pk])
    response = client.post(
        reverse("reference_add", args=[personas.project.slug, "chest"]),
        {"body": "Call 911.", "file": upload("scan.pdf"), "next": editor},
    )
    assert response.status_code == 302 and response.url == editor
    first = ReferenceDeliverable.objects.get(file_name="scan.pdf")
    assert reverse("reference_file", args=[first.pk]) in client.get(editor).content.decode()
    # An outside address in `next` is ignored.
    response = client.post(
        reverse("reference_add", args=[personas.project.slug, "chest"]),
        {"body": "Call 911 now.", "next": "https://evil.example/"},
    )
    assert response.url == reverse("task", args=[personas.project.slug, "chest"])
    page = client.get(editor).content.decode()
    # The newest reference is shown (it has no file); the earlier one's file is not.
    assert "Call 911 now." in page
    assert reverse("reference_file", args=[first.pk]) not in page
    services.reference_create(task=task, body="", file=upload("final.pdf"), user=personas.author)
    page = client.get(editor).content.decode()
    assert "final.pdf" in page and reverse("reference_file", args=[first.pk]) not in page


def test_unsafe_names_are_sanitized_for_storage_and_content_disposition(client, personas, task):
    reference = services.reference_create(
        task=task,
        body="",
        file=upload('../../etc/pass wd"\r\nX-Evil: 1;.html'),
        user=personas.author,
    )
    assert reference.file_name == "pass_wdX-Evil_1.html"
    assert reference.file_kind == "pdf"  # judged by its bytes, not its ".html" name
    client.force_login(personas.annotator)
    download = client.get(reverse("reference_file", args=[reference.pk]))
    assert download["Content-Disposition"] == 'attachment; filename="pass_wdX-Evil_1.html"'
    assert "X-Evil" not in {k for k, _ in download.items()}
    assert services.safe_file_name(".htaccess") == "htaccess"
    assert services.safe_file_name("...") == "reference"
    long = services.safe_file_name("a" * 400 + ".docx")
    assert len(long) == 150 and long.endswith(".docx")
    assert services.safe_file_name("Résumé clinique.pdf") == "Résumé_clinique.pdf"


def test_a_file_over_the_limit_is_refused_and_nothing_is_stored(client, personas, task, settings):
    settings.REFERENCE_FILE_MAX_BYTES = 100
    before = set(_stored_files())
    with pytest.raises(ValidationError) as refused:
        services.reference_create(task=task, body="x", file=upload(), user=personas.author)
    assert "memo.pdf" in refused.value.message_dict["file"][0]
    assert "at most 0.0 MB" in refused.value.message_dict["file"][0]
    client.force_login(personas.author)
    response = client.post(
        reverse("reference_add", args=[personas.project.slug, "chest"]),
        {"body": "Call 911.", "file": upload()},
        follow=True,
    )
    assert "Reference not saved: file:" in response.content.decode()
    reply = api_client(personas.author).post(
        f"/api/projects/{personas.project.slug}/tasks/chest/references/",
        {"body": "Call 911.", "file": upload()},
        format="multipart",
    )
    assert reply.status_code == 400 and "file" in reply.json()
    assert not ReferenceDeliverable.objects.exists()
    assert set(_stored_files()) == before
    # Exactly at the limit is fine.
    services.reference_create(task=task, body="", file=upload(data=b"x" * 100), user=None)


def test_editing_the_text_keeps_the_attached_file_when_asked(client, personas, task):
    first = services.reference_create(task=task, body="v1", file=upload(), user=personas.author)
    client.force_login(personas.author)
    url = reverse("reference_add", args=[personas.project.slug, "chest"])
    page = client.get(reverse("task", args=[personas.project.slug, "chest"])).content.decode()
    assert 'name="keep_file"' in page and "checked" in page
    client.post(url, {"body": "v2", "keep_file": "on"})
    kept = ReferenceDeliverable.objects.latest("pk")
    assert (kept.body, kept.file_name, kept.file_sha256) == (
        "v2",
        first.file_name,
        first.file_sha256,
    )
    assert b"".join(client.get(reverse("reference_file", args=[kept.pk])).streaming_content) == PDF
    client.post(url, {"body": "v3"})  # unticked: the new reference has no file
    assert not ReferenceDeliverable.objects.latest("pk").has_file
    reply = api_client(personas.author).post(
        f"/api/projects/{personas.project.slug}/tasks/chest/references/",
        {"body": "v4", "keep_file": "true"},
        format="multipart",
    )
    assert reply.json()["file"] is None  # v3, the current one, had no file to keep
    assert default_storage.exists(store.path_of(first.file_sha256))


def test_a_reference_needs_a_body_or_a_file(personas, task):
    with pytest.raises(ValidationError) as refused:
        services.reference_create(task=task, body="  ", file=None, user=personas.author)
    assert "body" in refused.value.message_dict
    with pytest.raises(ValidationError) as empty:
        services.reference_create(task=task, body="", file=upload(data=b""), user=None)
    assert "empty" in empty.value.message_dict["file"][0]


def test_api_uploads_multipart_and_downloads_for_members_only(personas, task):
    url = f"/api/projects/{personas.project.slug}/tasks/chest/references/"
    reply = api_client(personas.author).post(
        url, {"body": "Call 911.", "file": upload("memo.pdf")}, format="multipart"
    )
    assert reply.status_code == 201, reply.content
    data = reply.json()
    reference = ReferenceDeliverable.objects.get()
    assert data["file"] == {
        "name": "memo.pdf",
        "sha256": hashlib.sha256(PDF).hexdigest(),
        "kind": "pdf",
        "size": len(PDF),
        "download": f"/api/references/{reference.pk}/file/",
    }
    detail = api_client(personas.annotator).get(
        f"/api/projects/{personas.project.slug}/tasks/chest/"
    )
    assert detail.json()["references"][0]["file"]["name"] == "memo.pdf"
    download = api_client(personas.engineer).get(data["file"]["download"])
    assert download.status_code == 200 and b"".join(download.streaming_content) == PDF
    assert download["Content-Disposition"] == 'attachment; filename="memo.pdf"'
    assert api_client(personas.outsider).get(data["file"]["download"]).status_code == 404
    assert api_client(None).get(data["file"]["download"]).status_code == 401
    no_file = api_client(personas.author).post(url, {"body": "Text only."}, format="multipart")
    assert no_file.status_code == 201 and no_file.json()["file"] is None
    missing = api_client(personas.author).get(f"/api/references/{no_file.json()['id']}/file/")
    assert missing.status_code == 404
    assert api_client(personas.annotator).post(url, {"body": "x"}).status_code == 403


def test_tasks_export_lists_the_file_by_name_and_sha256_and_imports_back(personas, task):
    services.reference_create(task=task, body="Call 911.", file=upload(), user=personas.author)
    out = io.BytesIO()
    formats.tasks_jsonl(out, project=personas.project)
    row = json.loads(out.getvalue())
    assert row["reference"] == "Call 911."
    assert row["reference_file"] == {
        "name": "memo.pdf",
        "sha256": hashlib.sha256(PDF).hexdigest(),
        "bytes": len(PDF),
    }
    target = factories.make_project(owner=personas.admin, name="Copy")
    result = tasks_import(project=target, lines=out.getvalue().splitlines())
    assert (result.ok, result.created) == (True, 1)
    bad = {**row, "reference_file": "memo.pdf"}
    result = tasks_import(project=target, lines=[json.dumps(bad)])
    assert result.errors == [
        "line 1, field 'reference_file': null or an object with name, sha256 and bytes"
    ]


def _stored_files() -> list[str]:
    root = Path(default_storage.location)
    return [str(p) for p in root.rglob("*") if p.is_file()]
