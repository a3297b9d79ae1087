"""Watching a run finish: the live update swaps in the charts, and they are drawn."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from grading import services
from grading.models import GradingRun
from tests import factories
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CRITERIA = [
    ("Advises calling emergency services immediately", 5),
    ("Mentions electrocardiogram testing at hospital", 3),
]

# Every chart canvas on the page: whether Chart.js holds a chart for it, and how many of its
# pixels are painted (a canvas resized or replaced after drawing is blank again).
DRAWN = """() => Array.from(document.querySelectorAll("canvas[data-chart]")).map((canvas) => {
    const chart = Boolean(window.Chart && Chart.getChart(canvas));
    let painted = 0;
    if (canvas.width && canvas.height) {
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
    }
    return [canvas.dataset.chart, chart, painted];
})"""


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/", timeout=60_000)  # the live server's first page warms it up
    page.fill("#id_username", username)
    page.fill("#id_password", factories.PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def test_charts_are_drawn_after_watching_a_run_finish(
    page, live_server, personas, celery_worker, sim
):
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, external_id="chest-pain")
    grader = factories.make_published_rubric(project, task, CRITERIA, admin)
    factories.import_responses(
        project,
        [
            {"task_id": "chest-pain", "model": model, "response": text}
            for model, text in [
                ("m-good", "Call emergency services immediately; get an electrocardiogram."),
                ("m-bad", "Rest at home."),
            ]
        ],
    )
    judge = factories.make_judge(project, sim.url, max_concurrency=1)
    sim.config.latency_ms = 700  # the page is open, polling, before the run finishes
    login(page, live_server.url, admin.username)
    run = services.run_create(project=project, grader=grader, judge=judge, user=admin)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.get_by_test_id("run-status")).not_to_have_text("Completed")

    expect(page.get_by_test_id("run-status")).to_have_text("Completed", timeout=60_000)
    expect(page.locator("canvas[data-chart=means]")).to_be_visible()
    page.wait_for_timeout(1_000)  # Chart.js animates for a second at most
    drawn = page.evaluate(DRAWN)
    assert sorted(name for name, _, _ in drawn) == ["criteria", "heatmap", "histogram", "means"]
    for name, chart, painted in drawn:
        # The leaderboard's heatmap is painted by hand (static/assay.js), not by Chart.js.
        assert chart or name == "heatmap", f"no chart on the {name} canvas after the live update"
        assert painted > 100, f"the {name} canvas is blank after the live update"


def test_the_comparison_charts_are_drawn(page, live_server, personas, celery_worker, sim):
    """Two runs of the same rubric, the second over the first model only: the delta chart
    (interval bars and points) and the per-task chart draw under the CSP."""
    project, admin = personas.project, personas.admin
    task = factories.make_task(project, external_id="chest-pain")
    grader = factories.make_published_rubric(project, task, CRITERIA, admin)
    factories.import_responses(
        project,
        [
            {"task_id": "chest-pain", "model": model, "response": text, "sample_index": i}
            for i, (model, text) in enumerate(
                [
                    ("m-good", "Call emergency services immediately; get an electrocardiogram."),
                    ("m-good", "Call emergency services."),
                    ("m-bad", "Rest at home."),
                ]
            )
        ],
    )
    judge = factories.make_judge(project, sim.url)
    runs = [
        services.run_create(project=project, grader=grader, judge=judge, user=admin)
        for _ in range(2)
    ]
    for run in runs:
        wait_for(
            lambda run=run: GradingRun.objects.get(pk=run.pk).status == "completed",
            what=f"run {run.pk} to complete",
        )
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    login(page, live_server.url, admin.username)
    page.goto(f"{live_server.url}/runs/{runs[0].pk}/compare/{runs[1].pk}/")
    expect(page.get_by_test_id("compare-pairs")).to_be_visible()
    page.wait_for_timeout(1_000)  # Chart.js animates for a second at most
    drawn = page.evaluate(DRAWN)
    assert sorted(name for name, _, _ in drawn) == ["compare-pairs", "compare-tasks"]
    for name, chart, painted in drawn:
        assert chart, f"no chart on the {name} canvas"
        assert painted > 100, f"the {name} canvas is blank"
    assert not errors, errors
