"""Tasks in the browser pages: multi-turn messages on the new-task form and the task page's
Edit form (the service the API's PATCH uses), the Markdown preview, and the frozen prompt."""

from __future__ import annotations

import pytest

from rubrics import services
from rubrics.models import Task
from tests import factories

pytestmark = pytest.mark.django_db

TURNS = [
    ("system", "You are a **triage** nurse."),
    ("user", "Chest pressure at the gym."),
    ("assistant", "Are you short of breath?"),
    ("user", "Yes, and sweating."),
]


def _rows(turns) -> dict:
    return {"role": [r for r, _ in turns], "content": [c for _, c in turns]}


def _task(personas, external_id="chest"):
    return services.task_create(
        project=personas.project,
        external_id=external_id,
        title="Chest pain",
        messages=[{"role": "user", "content": "Chest pressure?"}],
    )


def test_a_new_task_takes_multi_turn_messages_in_page_order(client, personas):
    client.force_login(personas.author)
    slug = personas.project.slug
    form = client.get(f"/p/{slug}/tasks/new/").content.decode()
    assert 'data-testid="messages-editor"' in form and f"/p/{slug}/preview/markdown/" in form
    body = {"external_id": "chest", "title": "Chest pain", "tags": "cardio", **_rows(TURNS)}
    reply = client.post(f"/p/{slug}/tasks/new/", body)
    assert reply.status_code == 302
    task = Task.objects.get(external_id="chest")
    assert [(m["role"], m["content"]) for m in task.messages] == TURNS
    assert task.tags == ["cardio"]


def test_a_bad_message_on_the_new_task_form_is_named_and_nothing_is_made(client, personas):
    client.force_login(personas.author)
    turns = [("user", "Chest pressure."), ("robot", "Beep <b>boop</b>")]
    body = {"external_id": "chest", "title": "", "tags": "", **_rows(turns)}
    reply = client.post(f"/p/{personas.project.slug}/tasks/new/", body)
    page = reply.content.decode()
    assert reply.status_code == 200
    assert "messages[1].role: Role must be one of" in page
    assert "Beep &lt;b&gt;boop&lt;/b&gt;</textarea>" in page  # given back, escaped
    assert '<option value="robot" selected>' in page
    # Unpaired rows (a forged form) are a clear error too, never a 500.
    body = {"external_id": "chest", "role": ["user", "user"], "content": ["Hi"]}
    reply = client.post(f"/p/{personas.project.slug}/tasks/new/", body)
    assert reply.status_code == 200 and "2 roles for 1 contents" in reply.content.decode()
    assert not Task.objects.exists()


def test_the_task_page_edits_messages_title_and_tags(client, personas):
    task = _task(personas)
    client.force_login(personas.author)
    url = f"/p/{personas.project.slug}/tasks/chest/"
    page = client.get(url).content.decode()
    assert 'data-testid="task-edit"' in page and f'action="{url}edit/"' in page
    body = {"title": "Chest pain, two turns", "tags": "cardio, er", "context": "", **_rows(TURNS)}
    reply = client.post(f"{url}edit/", body)
    assert reply.status_code == 302 and reply["Location"] == url
    task.refresh_from_db()
    assert [(m["role"], m["content"]) for m in task.messages] == TURNS
    assert (task.title, task.tags) == ("Chest pain, two turns", ["cardio", "er"])
    page = client.get(url).content.decode()
    assert "Saved the task." in page
    turns = ("<strong>triage</strong> nurse", "Chest pressure at", "Are you short", "Yes, and")
    shown = [page.index(text) for text in turns]
    assert shown == sorted(shown)


def test_an_edit_the_service_refuses_is_shown_with_what_was_sent(client, personas):
    task = _task(personas)
    client.force_login(personas.author)
    turns = [("system", "Be brief."), ("user", "   ")]
    body = {"title": "Changed", "tags": "", "context": "", **_rows(turns)}
    reply = client.post(f"/p/{personas.project.slug}/tasks/chest/edit/", body)
    page = reply.content.decode()
    assert reply.status_code == 400
    assert "Every user message is empty" in page and "Be brief.</textarea>" in page
    task.refresh_from_db()
    assert task.title == "Chest pain" and task.messages[0]["content"] == "Chest pressure?"


def test_once_responses_answer_the_task_the_form_is_gone_and_a_forged_post_refused(
    client, personas
):
    task = _task(personas)
    factories.import_responses(
        personas.project, [{"task_id": "chest", "model": "m", "response": "Rest."}]
    )
    client.force_login(personas.author)
    url = f"/p/{personas.project.slug}/tasks/chest/"
    page = client.get(url).content.decode()
    assert 'data-testid="prompt-frozen"' in page and "Responses answer this task" in page
    assert f'action="{url}edit/"' not in page and "messages-editor" not in page
    body = {"title": "Chest pain", "tags": "", "context": "", **_rows(TURNS)}
    reply = client.post(f"{url}edit/", body, follow=True)
    api = client.patch(
        f"/api/projects/{personas.project.slug}/tasks/chest/",
        {"messages": [{"role": "user", "content": "Other"}]},
        content_type="application/json",
    )
    assert api.status_code == 409
    page = reply.content.decode()
    assert "Task not saved: Task &#x27;chest&#x27; has responses, which answer its prompt" in page
    task.refresh_from_db()
    assert task.messages == [{"role": "user", "content": "Chest pressure?"}]


def test_only_editors_see_the_edit_form_and_may_post_it(client, personas):
    _task(personas)
    url = f"/p/{personas.project.slug}/tasks/chest/"
    for user in (personas.annotator, personas.reviewer, personas.engineer):
        client.force_login(user)
        assert "task-edit" not in client.get(url).content.decode()
        assert client.post(f"{url}edit/", _rows(TURNS)).status_code == 403
    client.force_login(personas.outsider)
    assert client.post(f"{url}edit/", _rows(TURNS)).status_code == 404
    assert Task.objects.get().messages == [{"role": "user", "content": "Chest pressure?"}]


def test_the_preview_renders_sanitized_markdown(client, personas):
    url = f"/p/{personas.project.slug}/preview/markdown/"
    client.force_login(personas.author)
    text = "**Call** now\n\n<script>alert(1)</script> [x](javascript:alert(1))"
    html = client.post(url, {"content": text}).content.decode()
    assert "<strong>Call</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html and "href" not in html
    too_long = "x" * 1_000_000
    assert "nothing to preview" in client.post(url, {"content": too_long}).content.decode()
    assert client.get(url).status_code == 405
    client.force_login(personas.annotator)
    assert client.post(url, {"content": "x"}).status_code == 403
    client.force_login(personas.outsider)
    assert client.post(url, {"content": "x"}).status_code == 404


def test_the_task_page_does_not_grow_queries_with_messages_or_rubrics(client, personas):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(personas.author)
    counts = []
    for n in (1, 12):
        task = services.task_create(
            project=personas.project,
            external_id=f"t{n}",
            title="T",
            messages=[{"role": "user", "content": f"Turn {i}"} for i in range(n)],
        )
        for i in range(n):
            services.rubric_create(project=personas.project, task=task, title=f"R{i}", user=None)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/p/{personas.project.slug}/tasks/t{n}/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1] and counts[0] <= 12, counts


def test_the_preview_of_every_xss_payload_is_inert(client, personas):
    from tests.test_xss import html_problems
    from tests.xss_payloads import PAYLOADS

    client.force_login(personas.author)
    url = f"/p/{personas.project.slug}/preview/markdown/"
    problems = []
    for name, payload in PAYLOADS:
        html = client.post(url, {"content": payload}).content.decode()
        problems += [f"{name}: {p}" for p in html_problems(f"<html><body>{html}</body></html>")]
    assert not problems, "\n".join(problems)
