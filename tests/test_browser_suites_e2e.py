"""Suites end to end in headless Chromium, against the live server, a real worker and the
judge simulator: a HealthBench file imported as a suite through the import form, responses of
two models uploaded, a run over the suite started from the runs page, its leaderboard read, a
second run in batched mode compared with the first; then every demo persona walks the suite,
run, leaderboard and comparison pages (annotators get none of them). Every number read on a
page is checked against the database, and no page may log a console error."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest
from playwright.sync_api import expect

from grading import demo
from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun, Score
from rubrics.models import Role, Suite
from tests import factories
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A HealthBench file: three tasks, each with its own rubric (points and axis tags differ).
HB_TASKS = {
    "hb-fever": [
        ("Advises hydration with electrolyte solution", 5, "axis:completeness"),
        ("Recommends paracetamol dosing by weight", 3, "axis:accuracy"),
        ("Prescribes codeine syrup for the child", -4, "axis:accuracy"),
    ],
    "hb-ankle": [
        ("Suggests compression bandage and elevation", 4, "axis:completeness"),
        ("Mentions fracture assessment with xray imaging", 3, "axis:accuracy"),
        ("Recommends crutches when walking hurts", 2, "axis:completeness"),
        ("Dismisses swelling entirely", -2, "axis:accuracy"),
    ],
    "hb-sleep": [
        ("Describes consistent bedtime routine", 2, "axis:completeness"),
        ("Warns against caffeine in the evening", 2, "axis:accuracy"),
    ],
}
# What each model says, by task: the good model meets most criteria, the weak one few (and a
# pitfall), so the leaderboard has two different rows.
ANSWERS = {
    ("hb-fever", "m-good"): "Give hydration with an electrolyte solution and paracetamol "
    "dosing by weight.",
    ("hb-fever", "m-weak"): "Codeine syrup for the child should settle it.",
    ("hb-ankle", "m-good"): "Compression bandage and elevation; fracture assessment with an "
    "xray imaging; crutches when walking hurts.",
    ("hb-ankle", "m-weak"): "Swelling is nothing, ignore swelling entirely; use a compression "
    "bandage.",
    ("hb-sleep", "m-good"): "Keep a consistent bedtime routine.",
    ("hb-sleep", "m-weak"): "Warm milk helps.",
}
MODELS = ["m-good", "m-weak"]


def healthbench_jsonl() -> str:
    return "".join(
        json.dumps(
            {
                "prompt": [{"role": "user", "content": f"Question about {task[3:]}?"}],
                "prompt_id": task,
                "rubrics": [
                    {"criterion": text, "points": points, "tags": [tag]}
                    for text, points, tag in items
                ],
                "example_tags": ["theme:e2e"],
            }
        )
        + "\n"
        for task, items in HB_TASKS.items()
    )


def responses_jsonl() -> str:
    return "".join(
        json.dumps({"task_id": task, "model": model, "response": text}) + "\n"
        for (task, model), text in ANSWERS.items()
    )


def rule_raw(task: str, model: str) -> float:
    """The simulator's rule on the criteria written above: met points / positive points."""
    items = HB_TASKS[task]
    met = sum(p for text, p, _ in items if simulated_verdict(text, ANSWERS[(task, model)])[0])
    return met / sum(p for _, p, _ in items if p > 0)


def clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def fmt(x: float) -> str:
    """The pages' `score` filter."""
    return f"{x:.2f}"


def watch_console(page) -> list[str]:
    """Every console error and uncaught exception of the page, whatever its text."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def login(page, base: str, username: str, password: str = factories.PASSWORD) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def logout(page) -> None:
    page.click("button:has-text('Log out')")


def run_completed(run_id: int, timeout: float = 180) -> GradingRun:
    wait_for(
        lambda: GradingRun.objects.get(pk=run_id).status == "completed",
        timeout=timeout,
        what=f"run {run_id} to complete",
    )
    return GradingRun.objects.get(pk=run_id)


def board_from_db(run) -> tuple[dict, dict]:
    """Per model: (mean, n) over its responses' raw scores in the database; per (task, model)
    the same. The mean is clipped once averaged (HealthBench's _compute_clipped_stats), on the
    leaderboard and in the comparison alike."""
    by_model, by_cell = defaultdict(list), defaultdict(list)
    for task, model, raw in Score.objects.filter(run=run).values_list(
        "response__task__external_id", "response__model", "raw"
    ):
        assert raw is not None, (task, model)
        by_model[model].append(raw)
        by_cell[(task, model)].append(raw)

    def mean(values):
        return (clip(sum(values) / len(values)), len(values))

    return (
        {m: mean(v) for m, v in by_model.items()},
        {k: mean(v) for k, v in by_cell.items()},
    )


def run_id_of(url: str) -> int:
    return int(re.search(r"/runs/(\d+)/", url).group(1))


def start_run(page, base, slug, version, judge, mode="per_criterion") -> int:
    page.goto(f"{base}/p/{slug}/runs/")
    page.select_option("#id_suite_version", str(version.pk))
    page.select_option("#id_judge", str(judge.pk))
    page.select_option("#id_mode", mode)
    page.click("button:has-text('Start grading')")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    run_id = run_id_of(page.url)
    expect(page.get_by_test_id("run-status")).to_have_text("Completed", timeout=120_000)
    run_completed(run_id)
    page.reload()
    return run_id


def check_leaderboard(page, run) -> None:
    """The leaderboard on the run page: each model's overall cell and each task cell, with n,
    as the run's scores in the database say."""
    models, cells = board_from_db(run)
    board = page.get_by_test_id("leaderboard")
    expect(board).to_be_visible()
    table = board.get_by_test_id("leaderboard-models")
    expect(table.locator("tbody tr")).to_have_count(len(models))
    for model, (mean, n) in models.items():
        overall = table.locator(f"tr[data-model='{model}']").get_by_test_id("overall")
        expect(overall.get_by_test_id("mean")).to_have_text(fmt(mean))
        expect(overall.get_by_test_id("n")).to_have_text(f"n={n}")
    tasks = board.get_by_test_id("leaderboard-tasks")
    header = [h.strip() for h in tasks.locator("thead th").all_inner_texts()]
    for task in HB_TASKS:
        row = tasks.locator(f"tr[data-task='{task}']")
        expect(row).to_have_count(1)
        tds = row.locator("td")
        for model in models:
            mean, n = cells[(task, model)]
            cell = tds.nth(header.index(model))
            expect(cell.get_by_test_id("mean")).to_have_text(fmt(mean))
            expect(cell.get_by_test_id("n")).to_have_text(f"n={n}")
        spread = max(cells[(task, m)][0] for m in models) - min(cells[(task, m)][0] for m in models)
        expect(row.get_by_test_id("spread")).to_have_text(fmt(spread))


def test_healthbench_suite_imported_run_for_two_models_leaderboard_and_comparison(
    page, live_server, celery_worker, sim
):
    base = live_server.url
    errors = watch_console(page)
    admin = factories.make_user("hb-admin")
    project = factories.make_project(owner=admin, name="HealthBench e2e")
    judge = factories.make_judge(project, sim.url, name="Simulator")
    login(page, base, admin.username)

    # 1. The HealthBench file, imported and published as the suite "HB mini" in one step.
    page.goto(f"{base}/p/{project.slug}/rubrics/import/")
    page.select_option("#import-format", "healthbench")
    page.set_input_files(
        "#import-file",
        files=[
            {
                "name": "hb-mini.jsonl",
                "mimeType": "application/jsonl",
                "buffer": healthbench_jsonl().encode(),
            }
        ],
    )
    page.check("#import-publish")
    page.fill("#import-suite", "HB mini")
    page.click("button:has-text('Import')")
    done = page.get_by_test_id("import-suite-done")
    expect(done).to_contain_text("froze version 1")
    expect(done).to_contain_text("3 tasks")
    suite = Suite.objects.get(project=project, name="HB mini")
    version = suite.versions.get()
    assert set(version.manifest) == set(HB_TASKS)
    # Each task is pinned to its own grader, with its own criteria.
    graders = {e.task.external_id: e.grader for e in version.entries.select_related("task")}
    assert len({g.pk for g in graders.values()}) == 3
    for task, items in HB_TASKS.items():
        spec = graders[task].spec["criteria"]
        assert [(c["text"], float(c["points"])) for c in spec] == [
            (t, float(p)) for t, p, _ in items
        ]
    page.get_by_test_id("import-suite-link").click()
    expect(page.get_by_role("heading", name=re.compile("HB mini"))).to_be_visible()
    expect(page.get_by_test_id("task-count")).to_have_text("3")
    expect(page.get_by_test_id("suite-versions")).to_contain_text(version.content_hash[:8])

    # 2. Responses of two models, uploaded on the Responses page.
    page.click("nav >> text=Responses")
    page.set_input_files(
        "input[name=file]",
        files=[
            {
                "name": "outputs.jsonl",
                "mimeType": "application/jsonl",
                "buffer": responses_jsonl().encode(),
            }
        ],
    )
    page.click("button:has-text('Import')")
    expect(page.get_by_test_id("import-result")).to_contain_text(
        "Imported 6 responses from outputs.jsonl"
    )

    # 3. A run over the suite version, from the runs page; its leaderboard.
    first_id = start_run(page, base, project.slug, version, judge)
    first = GradingRun.objects.get(pk=first_id)
    assert first.suite_version_id == version.pk
    assert first.total_items == 2 * sum(len(items) for items in HB_TASKS.values())
    for score in Score.objects.filter(run=first).select_related("response__task"):
        task, model = score.response.task.external_id, score.response.model
        assert score.grader_id == graders[task].pk
        assert score.raw == pytest.approx(rule_raw(task, model)), (task, model)
    check_leaderboard(page, first)
    # The two models really differ, so a swapped row would show.
    models, _ = board_from_db(first)
    assert models["m-good"][0] > models["m-weak"][0]

    # 4. A second run in batched mode; the comparison of the two.
    sim.reset()
    second_id = start_run(page, base, project.slug, version, judge, mode="batched")
    second = GradingRun.objects.get(pk=second_id)
    assert second.mode == "batched"
    check_leaderboard(page, second)
    page.get_by_role("link", name=f"run #{first_id}", exact=True).click()
    page.wait_for_url(f"**/runs/{second_id}/compare/{first_id}/")
    compare = page.get_by_test_id("compare")
    expect(compare.get_by_test_id("run-a")).to_contain_text(f"Run #{second_id}")
    expect(compare.get_by_test_id("run-b")).to_contain_text(f"Run #{first_id}")
    # The comparison's means are the leaderboard's: clipped once averaged.
    means_a, _ = board_from_db(second)
    means_b, _ = board_from_db(first)
    pairs = page.get_by_test_id("compare-pairs")
    for model in MODELS:
        row = pairs.locator(f"tr[data-model='{model}']")
        tds = row.locator("td")
        expect(tds.nth(1)).to_have_text(str(len(HB_TASKS)))
        expect(tds.nth(2)).to_have_text("3 / 3")
        expect(tds.nth(3)).to_have_text(fmt(means_a[model][0]))
        expect(tds.nth(4)).to_have_text(fmt(means_b[model][0]))
        expect(row.get_by_test_id("delta")).to_have_text(fmt(means_b[model][0] - means_a[model][0]))
    # The same simulator in both modes: nothing flips, the two judges agree throughout.
    expect(page.get_by_test_id("no-flips")).to_be_visible()
    expect(page.get_by_test_id("agreement")).to_contain_text("100%")
    assert not errors, f"console errors: {errors}"


# --- Every demo persona on the new pages -------------------------------------------------

VIEWERS = {
    "demo": Role.ADMIN,
    "dr-lee": Role.AUTHOR,
    "reviewer": Role.REVIEWER,
    "engineer": Role.ENGINEER,
}
ANNOTATORS = ["annotator", "annotator2"]


def test_every_demo_persona_on_suite_run_leaderboard_and_comparison_pages(
    browser, live_server, celery_worker, sim, tmp_path
):
    base = live_server.url
    result = demo.load_demo(simulator_url=sim.url, out_dir=tmp_path)
    project = result.project
    suite = Suite.objects.get(project=project, name=demo.SUITE_NAME)
    runs = list(
        GradingRun.objects.filter(project=project, suite_version__suite=suite).order_by("pk")
    )
    assert len(runs) == 2  # the agent task's suite has a run of its own
    for run in GradingRun.objects.filter(project=project):
        run_completed(run.pk, timeout=300)
    first, second = runs
    models, _ = board_from_db(first)
    newest, _ = board_from_db(second)
    assert second.suite_version.number == 2
    pages = {
        "suites": f"/p/{project.slug}/suites/",
        "suite": f"/suites/{suite.pk}/",
        "runs": f"/p/{project.slug}/runs/",
        "run": f"/runs/{first.pk}/",
        "compare": f"/runs/{first.pk}/compare/{second.pk}/",
    }
    for username in [*VIEWERS, *ANNOTATORS]:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors = watch_console(page)
        login(page, base, username, demo.DEMO_PASSWORD)
        page.goto(f"{base}/p/{project.slug}/")
        nav = page.locator("nav.tabs")
        expect(nav).to_be_visible()
        if username in VIEWERS:
            for name in ("Suites", "Runs"):
                expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
            for what, path in pages.items():
                reply = page.goto(base + path)
                assert reply.status == 200, (username, what, reply.status)
            page.goto(base + pages["suite"])
            expect(page.get_by_test_id("suite-versions").locator("tbody tr")).to_have_count(2)
            # The suite's leaderboard is its newest version's: the second run's scores.
            board = page.get_by_test_id("leaderboard-models")
            for model, (mean, n) in newest.items():
                row = board.locator(f"tr[data-model='{model}']")
                expect(row.get_by_test_id("source-run")).to_have_text(f"run #{second.pk}")
                expect(row.get_by_test_id("overall").get_by_test_id("mean")).to_have_text(fmt(mean))
                expect(row.get_by_test_id("overall").get_by_test_id("n")).to_have_text(f"n={n}")
            page.goto(base + pages["run"])
            board = page.get_by_test_id("leaderboard-models")
            for model, (mean, n) in models.items():
                overall = board.locator(f"tr[data-model='{model}']").get_by_test_id("overall")
                expect(overall.get_by_test_id("mean")).to_have_text(fmt(mean))
                expect(overall.get_by_test_id("n")).to_have_text(f"n={n}")
            page.goto(base + pages["compare"])
            expect(page.get_by_test_id("compare-pairs").locator("tbody tr")).to_have_count(
                len(models)
            )
            assert not errors, (username, errors)
        else:
            # No link to suites, runs or their pages anywhere on the project page...
            for name in ("Suites", "Runs", "Datasets"):
                expect(nav.get_by_role("link", name=name, exact=True)).to_have_count(0)
            for pattern in ("/suites/", "/runs/"):
                expect(page.locator(f"a[href*='{pattern}']")).to_have_count(0)
            # ... and each page refused.
            for what, path in pages.items():
                reply = page.goto(base + path)
                assert reply.status in (403, 404), (username, what, reply.status)
                body = page.content()
                for model in models:
                    assert model not in body, (username, what, model)
            # The browser reports the refused pages as failed loads; nothing else.
            others = [e for e in errors if not re.search(r"status of 40[34]", e)]
            assert not others, (username, others)
            assert len(errors) == len(pages), (username, errors)
        context.close()
