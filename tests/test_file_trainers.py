"""Images and files for trainers: the reward endpoints take image and file parts as data: URIs
(stored by hash, refused with the field that holds them), try-it takes an episode with them or
an uploaded deliverable, and exports carry them: by hash in JSONL, as `files/` in a zip bundle,
and as an image column Hugging Face `datasets` decodes in Parquet."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import zipfile

import pytest
from django.test import override_settings
from django.utils.html import escape

from annotation.content.episode import Episode
from annotation.content.intake import ProjectIntake
from grading import reward_client
from grading.api.reward import AFTER_REPLY
from grading.datasets import formats
from rubrics import suites
from rubrics.files import store
from rubrics.models import Criterion, StoredFile
from tests import factories
from tests.test_api import api_client
from tests.test_episode_grading import make_grader

pytestmark = pytest.mark.django_db(transaction=True)

# (text, points, scope, step rule, step tool, check), judged by the simulator's rule: half the
# key words (5+ letters) found in what the scope shows. A trajectory criterion reads the whole
# episode as rendered for the judge, file lines included ("[image: quarterly-revenue.png ...]").
RUBRIC = [
    # "quarterly" and "revenue" are in the image's name: 2 of 4 key words -> met
    ("Attaches the quarterly revenue chart", 2, "trajectory", "", "", None),
    # "schedule" and "workbook" are in the spreadsheet's name: 2 of 3 -> met
    ("Shares the schedule workbook", 2, "trajectory", "", "", None),
    # outcome, on the final text: "summary" and "memorandum" found -> met
    ("Writes a summary memorandum", 1, "outcome", "", "", None),
]


def png(color=(200, 30, 30), size=(32, 24)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


@functools.cache
def xlsx() -> bytes:
    """One workbook for the module (openpyxl stamps the time it was saved into each)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Debt"
    sheet.append(["Year", "Opening", "Interest", "Closing"])
    for year in range(2025, 2030):
        sheet.append([year, 1000, 50, 950])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def episode(*parts, text="Summary memorandum attached.") -> dict:
    return {
        "messages": [
            {"role": "user", "content": "Build the debt schedule and chart revenue."},
            {"role": "assistant", "content": [{"type": "text", "text": text}, *parts]},
        ]
    }


def chart_and_workbook() -> dict:
    return episode(
        reward_client.image_part(png(), filename="quarterly-revenue.png"),
        reward_client.file_part(xlsx(), filename="schedule-workbook.xlsx"),
    )


@pytest.fixture
def world(personas, sim):
    grader = make_grader(personas.project, personas.admin, rubric=RUBRIC)
    # A judge that sees images: the simulator's colour rule decides a chart criterion on the
    # image it is sent, and unmet for a judge sent none.
    from grading import services as grading_services

    grading_services.judge_create(
        project=personas.project,
        name="sim",
        base_url=sim.url,
        model="judge-model",
        accepts_images=True,
    )
    yield grader
    assert AFTER_REPLY.wait_idle(timeout=30)


def post_grader(client, grader, responses):
    task = grader.version.rubric.task.external_id
    return client.post(
        f"/api/graders/{grader.hash}/score/",
        {"task": task, "responses": responses},
        format="json",
    )


# --- The reward endpoints ------------------------------------------------------------------


def test_the_reward_endpoints_grade_image_and_file_parts(personas, sim, world):
    client = api_client(personas.engineer)
    reply = post_grader(client, world, [chart_and_workbook()])
    assert reply.status_code == 200, reply.content
    [result] = reply.json()
    assert [v["outcome"] for v in result["verdicts"]] == ["met", "met", "met"]
    assert result["score"] == pytest.approx(1.0)
    # Both files are stored in the project by hash; the image re-encoded, the workbook as sent.
    # (An opaque photo-like image may be stored as JPEG: rubrics.files.images.reencode.)
    held = dict(StoredFile.objects.filter(project=personas.project).values_list("kind", "sha256"))
    image_kind = next(k for k in held if k != "xlsx")
    assert set(held) == {image_kind, "xlsx"} and image_kind in ("png", "jpeg")
    assert held["xlsx"] == hashlib.sha256(xlsx()).hexdigest()
    assert store.read(held[image_kind])[:3] in (b"\x89PN", b"\xff\xd8\xff")
    # The judge read the files named by their hashes: the chart as an image part (it sees
    # images), the workbook as converted text, never its bytes (it reads no files).
    sent = json.dumps(list(sim.received))
    assert held[image_kind][:16] in sent and held["xlsx"][:16] in sent
    assert '"image_url"' in sent and "file_data" not in sent
    assert base64.b64encode(xlsx()[:600]).decode()[:400] not in sent

    # The suite's URL takes them the same way.
    version = suites.suite_of_grader(grader=world, user=personas.admin)
    task = world.version.rubric.task.external_id
    reply = client.post(
        f"/api/suites/{version.suite_id}/score/",
        {"items": [{"task": task, "responses": [chart_and_workbook()]}]},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    [result] = reply.json()["items"][0]["results"]
    assert result["score"] == pytest.approx(1.0)


def test_per_step_rewards_keep_working_with_files(personas, sim, world):
    rubric = [("Attaches the quarterly revenue chart", 2, "step", "all", "", None)]
    grader = make_grader(personas.project, personas.admin, rubric=rubric)
    reply = post_grader(api_client(personas.engineer), grader, [chart_and_workbook()])
    assert reply.status_code == 200, reply.content
    [result] = reply.json()
    assert [(s["step"], s["outcome"]) for s in result["steps"]] == [(1, "met")]
    assert result["steps"][0]["reward"] == pytest.approx(1.0)


def test_the_same_image_twice_is_one_judge_call(personas, sim, world):
    client = api_client(personas.engineer)
    rubric = [("Attaches the quarterly revenue chart", 2, "trajectory", "", "", None)]
    grader = make_grader(personas.project, personas.admin, rubric=rubric)
    image = png(color=(10, 120, 200))
    first = post_grader(client, grader, [episode(reward_client.image_part(image))])
    assert first.status_code == 200, first.content
    assert AFTER_REPLY.wait_idle(timeout=30)  # the cache is written after the reply
    again = post_grader(client, grader, [episode(reward_client.image_part(image))])
    assert again.status_code == 200, again.content
    assert sim.stats.requests == 1
    assert again.json()[0]["verdicts"][0]["cached"] is True
    # Another image (same size, other pixels) is another file, so another call.
    other = post_grader(client, grader, [episode(reward_client.image_part(png((0, 0, 0))))])
    assert other.status_code == 200, other.content
    assert sim.stats.requests == 2


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
)
WHERE = "messages[1].content[1]"


@pytest.mark.parametrize(
    ("part", "field", "says"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/chart.png"}},
            f"{WHERE}.image_url.url",
            "does not fetch files from URLs",
        ),
        (
            {"type": "image_url", "image_url": {"url": "charts/q3.png"}},
            f"{WHERE}.image_url.url",
            "takes no bundle",
        ),
        (
            {"type": "file", "file": {"path": "out/memo.docx", "filename": "memo.docx"}},
            f"{WHERE}.file",
            "takes no bundle",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%not-base64"}},
            f"{WHERE}.image_url.url",
            "not valid base64",
        ),
        (
            {
                "type": "image_url",
                "image_url": {"url": "data:image/svg+xml;base64," + base64.b64encode(SVG).decode()},
            },
            f"{WHERE}.image_url.url",
            "SVG",
        ),
        (
            {"type": "file", "file": {"file_data": "data:text/plain;base64,", "filename": "x"}},
            f"{WHERE}.file",
            "empty",
        ),
        (
            {"type": "image_url", "image_url": {"url": "sha256:" + "ab" * 32}},
            f"{WHERE}.image_url.url",
            "no file with hash",
        ),
    ],
    ids=["url", "bundle-image", "bundle-file", "bad-base64", "svg", "empty", "unknown-hash"],
)
def test_a_bad_part_is_a_400_naming_the_response_and_the_field(
    personas, sim, world, part, field, says
):
    client = api_client(personas.engineer)
    good = chart_and_workbook()
    reply = post_grader(client, world, [good, episode(part)])
    assert reply.status_code == 400, reply.content
    errors = reply.json()["responses"]
    assert list(errors) == ["1"]
    assert errors["1"][0].startswith(f"{field}: "), errors
    assert says in errors["1"][0]
    # Nothing graded, and the good response's files left no row (the request is one write).
    assert sim.stats.requests == 0
    assert not StoredFile.objects.filter(project=personas.project).exists()

    # The suite's URL names the item too: items[0].responses[1].<field>.
    version = suites.suite_of_grader(grader=world, user=personas.admin)
    task = world.version.rubric.task.external_id
    reply = client.post(
        f"/api/suites/{version.suite_id}/score/",
        {"items": [{"task": task, "responses": [good, episode(part)]}]},
        format="json",
    )
    assert reply.status_code == 400, reply.content
    [message] = reply.json()["items"]["0"]["responses"]["1"]
    assert message.startswith(f"{field}: ") and says in message
    assert not StoredFile.objects.filter(project=personas.project).exists()


def test_an_oversized_file_and_an_oversized_body_are_refused(personas, sim, world):
    client = api_client(personas.engineer)
    big = png(size=(400, 400))
    with override_settings(FILE_MAX_BYTES=len(big) - 1):
        reply = post_grader(
            client, world, [episode(reward_client.file_part(big, filename="b.png"))]
        )
    assert reply.status_code == 400, reply.content
    [message] = reply.json()["responses"]["0"]
    assert message.startswith(f"{WHERE}.file: ") and "ASSAY_FILE_MAX_BYTES" in message

    # A few MB of images pass; a body over ASSAY_REWARD_MAX_BODY_BYTES is a 413 before it is
    # read, naming the setting.
    noisy = _noise_png(1100)  # incompressible: about 3.6 MB
    assert len(noisy) > 3 * 1024 * 1024
    reply = post_grader(client, world, [episode(reward_client.image_part(noisy))])
    assert reply.status_code == 200, reply.content
    with override_settings(REWARD_MAX_BODY_BYTES=2 * 1024 * 1024):
        reply = post_grader(client, world, [episode(reward_client.image_part(noisy))])
    assert reply.status_code == 413, reply.content
    assert reply.json()["field"] == "body"
    assert "ASSAY_REWARD_MAX_BODY_BYTES" in reply.json()["detail"]
    assert StoredFile.objects.filter(project=personas.project).count() == 1


def _noise_png(side: int) -> bytes:
    import random

    from PIL import Image

    rng = random.Random(7)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_a_caller_who_may_not_grade_stores_nothing(personas, sim, world):
    version = suites.suite_of_grader(grader=world, user=personas.admin)
    task = world.version.rubric.task.external_id
    body = {"items": [{"task": task, "responses": [chart_and_workbook()]}]}
    for user, status in (
        (personas.annotator, 403),
        (personas.author, 403),
        (personas.outsider, 404),
    ):
        client = api_client(user)
        assert post_grader(client, world, [chart_and_workbook()]).status_code == status
        reply = client.post(f"/api/suites/{version.suite_id}/score/", body, format="json")
        assert reply.status_code == status, (user, reply.content)
    assert not StoredFile.objects.exists()
    assert sim.stats.requests == 0


def test_the_reward_client_sends_images_and_files(
    personas, sim, world, live_server, tmp_path, monkeypatch
):
    from rubrics.tokens import token_create

    _, key = token_create(user=personas.engineer, name="trainer", scopes=["grade"])
    path = tmp_path / "schedule-workbook.xlsx"
    path.write_bytes(xlsx())
    chart = tmp_path / "quarterly-revenue.png"
    chart.write_bytes(png())
    part = reward_client.file_part(path)
    assert part["file"]["filename"] == "schedule-workbook.xlsx"
    assert part["file"]["file_data"].startswith("data:application/vnd.openxmlformats")
    image = reward_client.image_part(chart)
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    client = reward_client.AssayReward(live_server.url, world.hash, key)
    task = world.version.rubric.task.external_id
    # One assistant message with parts stays an episode (it is not flattened to its text).
    completion = [{"role": "assistant", "content": ["Summary memorandum attached.", image, part]}]
    [result] = client.results([completion], task=task)
    assert [v["outcome"] for v in result["verdicts"]] == ["met", "met", "met"]


# --- Try-it -----------------------------------------------------------------------------------


@pytest.fixture
def draft(personas):
    from rubrics import services as rubric_services

    task = factories.make_task(personas.project, "bank-try", prompt="Build the debt schedule.")
    rubric = rubric_services.rubric_create(
        project=personas.project,
        task=task,
        title="Debt schedule",
        user=personas.author,
        criteria=[
            rubric_services.clean_criterion("Shares the schedule workbook", 2),
            rubric_services.clean_criterion("Writes a summary memorandum", 1),
        ],
    )
    # The workbook criterion reads the whole episode, its file lines included.
    Criterion.objects.filter(version__rubric=rubric, text="Shares the schedule workbook").update(
        scope="trajectory"
    )
    return rubric


def try_it(client, draft, **data):
    from django.urls import reverse

    return client.post(reverse("rubric_try", kwargs={"pk": draft.pk}), data)


def test_try_it_grades_an_uploaded_deliverable_and_links_it(client, personas, sim, draft):
    from django.core.files.uploadedfile import SimpleUploadedFile

    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    upload = SimpleUploadedFile("schedule-workbook.xlsx", xlsx())
    reply = try_it(
        client,
        draft,
        action="grade",
        judge=judge.pk,
        response="Summary memorandum attached.",
        deliverable=upload,
    )
    assert reply.status_code == 200
    body = reply.content.decode()
    assert 'role="alert"' not in body, body
    sha = hashlib.sha256(xlsx()).hexdigest()
    assert StoredFile.objects.filter(project=personas.project, sha256=sha, kind="xlsx").exists()
    # The result lists the file, linked to the project's file view, which serves it.
    link = f"/p/{personas.project.slug}/files/{sha}/?name=schedule-workbook.xlsx"
    assert 'data-testid="try-files"' in body and link in body
    served = client.get(link)
    assert served.status_code == 200
    assert b"".join(served.streaming_content if served.streaming else [served.content]) == xlsx()
    assert body.count('data-testid="try-verdict"') == 2
    # The judge read the deliverable by name and hash beside the text, and found it.
    sent = json.dumps(list(sim.received))
    assert sha[:16] in sent
    assert '<td class="met">met' in body


def test_try_it_grades_a_pasted_episode_with_an_image(client, personas, sim, draft):
    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    pasted = json.dumps(episode(reward_client.image_part(png(), filename="revenue.png")))
    reply = try_it(client, draft, action="grade", judge=judge.pk, episode=pasted)
    body = reply.content.decode()
    assert reply.status_code == 200 and 'role="alert"' not in body, body
    [sha] = StoredFile.objects.filter(project=personas.project).values_list("sha256", flat=True)
    assert f"/p/{personas.project.slug}/files/{sha}/" in body
    assert 'data-testid="try-trajectory"' in body
    assert body.count('data-testid="try-verdict"') == 2


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ({"deliverable": ("chart.svg", SVG)}, "deliverable: 'chart.svg' is an SVG image"),
        ({"deliverable": ("empty.pdf", b"")}, "deliverable: 'empty.pdf' is empty."),
        (
            {"episode": json.dumps(episode({"type": "image_url", "image_url": {"url": "a.png"}}))},
            f"episode: {WHERE}.image_url.url: 'a.png' looks like a path in a bundle, "
            "but try-it takes no bundle",
        ),
        (
            {"episode": json.dumps(chart_and_workbook()), "deliverable": ("m.pdf", b"%PDF-1.4")},
            "deliverable: attach it to a text response",
        ),
    ],
    ids=["svg", "empty", "bundle-path", "episode-and-deliverable"],
)
def test_try_it_refuses_bad_files_naming_the_field(client, personas, sim, draft, data, said):
    from django.core.files.uploadedfile import SimpleUploadedFile

    judge = factories.make_judge(personas.project, sim.url)
    client.force_login(personas.author)
    if "deliverable" in data:
        name, content = data["deliverable"]
        data = {**data, "deliverable": SimpleUploadedFile(name, content)}
    reply = try_it(client, draft, action="grade", judge=judge.pk, response="", **data)
    body = reply.content.decode()
    assert escape(said) in body, body
    assert sim.stats.requests == 0


def test_try_it_takes_no_files_from_a_query_or_from_an_annotator(client, personas, sim, draft):
    from django.urls import reverse

    client.force_login(personas.author)
    pasted = json.dumps(chart_and_workbook())
    url = reverse("rubric_try", kwargs={"pk": draft.pk})
    reply = client.get(url, {"action": "preview", "episode": pasted})
    assert "images and files are not taken here" in reply.content.decode()
    client.force_login(personas.annotator)
    assert try_it(client, draft, action="preview", episode=pasted).status_code in (403, 404)
    assert not StoredFile.objects.exists()


# --- Exports ----------------------------------------------------------------------------------


@pytest.fixture
def with_files(personas):
    """Three responses: an episode with a chart and a workbook, one with the same chart again,
    and a plain text."""
    from annotation.models import Response

    project = personas.project
    task = factories.make_task(project, "bank-export")
    intake = ProjectIntake(project)
    first = Episode.parse(chart_and_workbook(), files=intake)
    again = Episode.parse(
        episode(reward_client.image_part(png(), filename="again.png")), files=intake
    )
    for i, content in enumerate((first, again)):
        Response.objects.create(
            task=task, model="m", sample_index=i, text=content.final_text, content=content.stored()
        )
    Response.objects.create(task=task, model="m", sample_index=2, text="Just text.")
    refs = {ref.kind: ref for _, ref in first.files()}
    return project, refs


def export(fmt: str, project) -> bytes:
    out = io.BytesIO()
    rows, digest = formats.write(fmt, out, project=project)
    assert rows == 3
    assert digest == hashlib.sha256(out.getvalue()).hexdigest()
    return out.getvalue()


def test_jsonl_exports_name_files_by_hash(with_files):
    project, refs = with_files
    lines = [json.loads(line) for line in export("responses-jsonl", project).splitlines()]
    image, workbook = lines[0]["messages"][1]["content"][1:]
    image_ref = next(r for k, r in refs.items() if k != "xlsx")
    assert image["image_url"]["url"] == f"sha256:{image_ref.sha256}"
    assert image["file"]["sha256"] == image_ref.sha256
    assert workbook["file"] == refs["xlsx"].as_json()
    assert lines[2]["response"] == "Just text." and lines[2]["messages"] is None


def test_the_bundle_export_holds_every_file_its_parts_point_at(with_files, personas, tmp_path):
    from django.core.management import call_command

    project, refs = with_files
    data = export("responses-bundle", project)
    bundle = zipfile.ZipFile(io.BytesIO(data))
    names = bundle.namelist()
    assert names[0] == "responses.jsonl"
    # Each file once (the chart is in two responses), named by its hash and kind.
    expected = {f"files/{r.sha256}.{r.kind}" for r in refs.values()}
    assert set(names[1:]) == expected and len(names) == 3
    for ref in refs.values():
        assert bundle.read(f"files/{ref.sha256}.{ref.kind}") == store.read(ref.sha256)
    lines = [json.loads(x) for x in bundle.read("responses.jsonl").splitlines()]
    pointed = []
    for line in lines:
        for message in line["messages"] or ():
            for part in message["content"] if isinstance(message["content"], list) else ():
                if part["type"] == "image_url":
                    pointed.append(part["image_url"]["url"])
                elif part["type"] == "file":
                    pointed.append(part["file"]["path"])
    assert len(pointed) == 3 and set(pointed) == expected
    assert all(p in names for p in pointed)
    assert lines[2]["response"] == "Just text."
    # The same responses make the same bundle, byte for byte.
    assert export("responses-bundle", project) == data

    # Read back by the real bundle import into another project: the same episodes, the same
    # files (by hash) and names, held by that project (tests/test_file_roundtrips.py checks
    # every response and the service door).
    from annotation.models import Response

    other = factories.make_project(name="Bundle back")
    factories.make_task(other, "bank-export")
    (tmp_path / "back.zip").write_bytes(data)
    call_command("import_responses", str(tmp_path / "back.zip"), project=other.slug)
    back = Response.objects.get(task__project=other, sample_index=0).episode
    assert {ref.sha256 for _, ref in back.files()} == {r.sha256 for r in refs.values()}
    assert [ref.name for _, ref in back.files()] == [
        "quarterly-revenue.png",
        "schedule-workbook.xlsx",
    ]
    assert StoredFile.objects.filter(project=other).count() == 2
    assert Response.objects.filter(task__project=other).count() == 3

    # The command writes the same zip.
    path = tmp_path / "responses.zip"
    call_command(
        "export_dataset", project=project.slug, format="responses-bundle", output=str(path)
    )
    assert path.read_bytes() == data


def test_the_parquet_export_has_an_image_column_datasets_decodes(with_files, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    project, refs = with_files
    path = tmp_path / "responses.parquet"
    path.write_bytes(export("responses-parquet", project))
    table = pq.read_table(path)
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert table.schema.field("images").type == pa.list_(image)
    images = table.column("images").to_pylist()
    image_ref = next(r for k, r in refs.items() if k != "xlsx")
    assert [len(i) for i in images] == [1, 1, 0]  # the workbook is not an image
    assert images[0][0]["bytes"] == store.read(image_ref.sha256)
    assert images[0][0]["path"] == f"{image_ref.sha256}.{image_ref.kind}"
    assert json.loads(table.column("messages")[0].as_py())[1]["content"][2]["file"]["sha256"] == (
        refs["xlsx"].sha256
    )

    # Hugging Face `datasets` reads the column as images and decodes them to PIL images.
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    loaded = datasets.Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "hf"))
    assert isinstance(loaded.features["images"], datasets.List | datasets.Sequence)
    assert isinstance(loaded.features["images"].feature, datasets.Image)
    decoded = loaded[0]["images"][0]
    assert isinstance(decoded, Image.Image) and decoded.size == (32, 24)
    assert loaded[2]["images"] == []
    assert loaded[2]["response"] == "Just text."
