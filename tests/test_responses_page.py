"""The Responses page (issue 18): search in text, filters by model, task and sample, a cursor
over ids; and one response's page with its text sanitized, metadata and scores in each run."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Response
from grading import services as grading_services
from grading.models import Score
from tests import factories
from tests.test_api import api_client


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def world(personas, n_tasks: int = 2):
    tasks = [factories.make_task(personas.project) for _ in range(n_tasks)]
    rows = []
    for i, task in enumerate(tasks):
        for model in ("alpha-1", "beta-2"):
            for sample in (0, 1):
                rows.append(
                    {
                        "task_id": task.external_id,
                        "model": model,
                        "response": f"Answer {i} by {model}: drink WATER, sample {sample}.",
                        "sample_index": sample,
                    }
                )
    factories.import_responses(personas.project, rows)
    return tasks


def listed(html: str) -> set[int]:
    return {r.pk for r in Response.objects.all() if reverse("response", args=[r.pk]) in html}


def page(user, slug, **query):
    return signed_in(user).get(reverse("responses", args=[slug]), query)


def test_search_and_filters(personas):
    tasks = world(personas)
    slug = personas.project.slug
    everything = set(Response.objects.values_list("pk", flat=True))
    assert listed(page(personas.reviewer, slug).content.decode()) == everything
    got = page(personas.reviewer, slug, q="water")  # case-insensitive
    assert listed(got.content.decode()) == everything
    got = page(personas.reviewer, slug, q="by beta-2")
    assert listed(got.content.decode()) == set(
        Response.objects.filter(model="beta-2").values_list("pk", flat=True)
    )
    got = page(personas.reviewer, slug, model="alpha-1", task=tasks[1].external_id, sample_index=1)
    only = Response.objects.get(model="alpha-1", task=tasks[1], sample_index=1)
    assert listed(got.content.decode()) == {only.pk}
    got = page(personas.reviewer, slug, q="no such words")
    assert listed(got.content.decode()) == set()


@pytest.mark.parametrize(
    "query",
    [{"q": "x" * 201}, {"sample_index": "-1"}, {"sample_index": "one"}, {"after": "z"}],
)
def test_bad_search_is_a_clear_error_not_a_500(personas, query):
    world(personas, 1)
    got = page(personas.reviewer, personas.project.slug, **query)
    assert got.status_code == 200
    html = got.content.decode()
    assert listed(html) == set()  # refused: nothing listed, and the form names the field
    field = next(iter(query))
    assert 'data-testid="search-errors"' in html
    assert f"<li>{field}: " in html


def test_the_search_form_keeps_its_values(personas):
    world(personas, 1)
    html = page(personas.reviewer, personas.project.slug, q="drink", model="beta-2").content
    html = html.decode()
    assert 'data-testid="response-search"' in html
    assert 'name="q" value="drink"' in html
    assert 'name="model" value="beta-2"' in html
    assert "<script" not in html.split('data-testid="response-search"')[1].split("</form>")[0]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_search_form_submits_and_filters_in_chromium(personas, browser, live_server):
    """A browser fills the form and presses Search: the list is filtered, the values stay in
    the inputs, and nothing breaks the page's Content-Security-Policy."""
    from playwright.sync_api import expect

    tasks = world(personas)
    context = browser.new_context()
    context.add_cookies([_session_cookie(personas.reviewer, live_server.url)])
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        tab.goto(f"{live_server.url}/p/{personas.project.slug}/responses/", timeout=60_000)
        expect(tab.locator("a", has_text="details")).to_have_count(8)
        form = tab.get_by_test_id("response-search")
        form.get_by_label("Text contains").fill("water")
        form.get_by_label("Model").fill("beta-2")
        form.get_by_label("Sample").fill("1")
        form.get_by_role("button", name="Search").click()
        tab.wait_for_url("**sample_index=1**")
        expect(tab.locator("a", has_text="details")).to_have_count(2)
        wanted = Response.objects.filter(model="beta-2", sample_index=1)
        assert {r.task_id for r in wanted} == {t.pk for t in tasks}
        html = tab.content()
        assert listed(html) == set(wanted.values_list("pk", flat=True))
        expect(form.get_by_label("Text contains")).to_have_value("water")
        expect(form.get_by_label("Model")).to_have_value("beta-2")
        expect(form.get_by_label("Sample")).to_have_value("1")
        # Nothing matches: said so, and Clear brings the whole list back.
        form.get_by_label("Text contains").fill("no such words")
        form.get_by_role("button", name="Search").click()
        expect(tab.get_by_text("No response matches.")).to_be_visible()
        tab.get_by_role("link", name="Clear").click()
        expect(tab.locator("a", has_text="details")).to_have_count(8)
        expect(tab.get_by_test_id("response-search").get_by_label("Model")).to_have_value("")
    finally:
        context.close()
    assert problems == []


def _session_cookie(user, base: str) -> dict:
    client = signed_in(user)
    from django.conf import settings

    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": base,
    }


def test_cursor_pages_through_everything_once(personas, settings, monkeypatch):
    monkeypatch.setattr("annotation.views.PAGE", 3)
    world(personas)  # 8 responses: pages of 3, 3, 2
    seen: list[int] = []
    client = signed_in(personas.engineer)
    url = reverse("responses", args=[personas.project.slug]) + "?model=&q=answer"
    pages = 0
    while url:
        html = client.get(url).content.decode()
        rows = listed(html)
        assert len(rows) <= 3
        seen += sorted(rows)
        pages += 1
        marker = 'rel="next"'
        url = None
        if marker in html:
            href = html.split('<a href="?', 1)[1].split('"', 1)[0].replace("&amp;", "&")
            url = reverse("responses", args=[personas.project.slug]) + "?" + href
    assert pages == 3
    assert seen == sorted(Response.objects.values_list("pk", flat=True))


def test_page_query_count_is_constant_in_rows(personas, django_assert_num_queries):
    world(personas, 1)
    client = signed_in(personas.reviewer)
    url = reverse("responses", args=[personas.project.slug])
    client.get(url)  # warm the session
    with django_assert_num_queries(5) as few:
        client.get(url, {"q": "water"})
    world(personas, 6)
    with django_assert_num_queries(len(few.captured_queries)):
        client.get(url, {"q": "water"})


def test_annotators_are_refused_both_pages(personas):
    world(personas, 1)
    response = Response.objects.first()
    assert page(personas.annotator, personas.project.slug, q="water").status_code == 403
    assert (
        signed_in(personas.annotator).get(reverse("response", args=[response.pk])).status_code
        == 403
    )
    assert (
        signed_in(personas.outsider).get(reverse("response", args=[response.pk])).status_code == 404
    )


def test_detail_shows_text_sanitized_metadata_and_scores(personas, django_assert_num_queries):
    task = factories.make_task(personas.project)
    factories.import_responses(
        personas.project,
        [
            {
                "task_id": task.external_id,
                "model": "alpha-1",
                "response": "**Rest** <script>alert(1)</script><img src=x onerror=alert(2)>",
                "metadata": {"temperature": 0.7, "note": "<b>bold</b>"},
            }
        ],
    )
    response = Response.objects.get()
    grader = factories.make_published_rubric(
        personas.project, task, [("Advises rest", 1)], personas.admin
    )
    judge = factories.make_judge(personas.project, "http://127.0.0.1:9/v1")
    runs = [
        grading_services.run_create(
            project=personas.project, grader=grader, judge=judge, user=personas.admin
        )
        for _ in range(2)
    ]
    Score.objects.update_or_create(
        run=runs[0], response=response, defaults={"status": "done", "raw": 0.75}
    )
    Score.objects.update_or_create(run=runs[1], response=response, defaults={"status": "pending"})
    client = signed_in(personas.reviewer)
    url = reverse("response", args=[response.pk])
    client.get(url)
    with django_assert_num_queries(5):
        html = client.get(url).content.decode()
    assert "<strong>Rest</strong>" in html
    shown = html.split('data-testid="response">', 1)[1].split("</div>", 1)[0]
    assert "<script" not in shown and "<img" not in shown, shown
    assert "<script>alert(1)</script>" not in html, html[html.index("<script>alert(1)") - 300 :][
        :400
    ]
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "temperature" in html
    score = Score.objects.get(run=runs[0], response=response)
    assert reverse("score", args=[runs[0].pk, score.pk]) in html and "0.750" in html
    assert reverse("run", args=[runs[1].pk]) in html and "pending" in html


def test_api_search_and_sample_filter(personas):
    tasks = world(personas)
    client = api_client(personas.reviewer)
    url = f"/api/projects/{personas.project.slug}/responses/"
    got = client.get(url, {"q": "BY BETA-2", "sample_index": 1, "task": tasks[0].external_id})
    assert got.status_code == 200
    only = Response.objects.get(model="beta-2", task=tasks[0], sample_index=1)
    assert [r["id"] for r in got.json()["results"]] == [only.pk]
    assert client.get(url, {"q": "x" * 201}).status_code == 400
    assert client.get(url, {"sample_index": -1}).status_code == 400
