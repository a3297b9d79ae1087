"""The score page of a 30-step episode in Chromium: every step's verdict shows beside its step,
long parts open on a click, and the page logs no error under the CSP."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.test_browser_run_charts import login
from tests.test_trajectory_view import graded_world, long_episode

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_score_page_shows_a_30_step_episode_with_its_step_verdicts(page, live_server, personas):
    episode = long_episode(29, long_at=3)  # 29 tool-calling turns and the closing answer: 30 steps
    steps = episode.steps()
    assert len(steps) == 30
    run, score, *_ = graded_world(personas, episode)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    login(page, live_server.url, personas.engineer.username)
    page.goto(f"{live_server.url}/runs/{run.pk}/scores/{score.pk}/")

    trajectory = page.get_by_test_id("trajectory")
    expect(trajectory).to_be_visible()
    expect(page.get_by_test_id("trajectory-message")).to_have_count(len(episode.messages))
    expect(page.get_by_test_id("step-verdict")).to_have_count(30)
    for k, s in enumerate(steps):
        row = page.locator(f'[data-testid="trajectory-message"][data-index="{s}"]')
        verdict = row.get_by_test_id("step-verdict")
        expect(verdict).to_have_count(1)
        expect(verdict).to_have_attribute("data-outcome", "unmet" if k == 1 else "met")
        expect(verdict).to_contain_text(f"step verdict {k}")
    # The last step is the closing answer, seen as Markdown, with its verdict in view.
    last = page.locator(f'[data-testid="trajectory-message"][data-index="{steps[-1]}"]')
    last.scroll_into_view_if_needed()
    expect(last.locator("strong", has_text="A17")).to_be_visible()
    expect(last.get_by_test_id("step-verdict")).to_be_visible()
    # Tool outputs sit with their calls; the step criterion states its rule and tally.
    expect(page.get_by_test_id("tool-call")).to_have_count(29)
    expect(page.get_by_test_id("tool-output").first).to_have_text("page 0: ok")
    expect(page.get_by_test_id("steps-met")).to_have_text("29 of 30 steps met")
    expect(page.get_by_test_id("step-rule")).to_contain_text("Met when met at every step")
    # A long tool output starts collapsed and opens on a click.
    long_call = page.locator('[data-testid="tool-call"][data-call="c3"]')
    output = long_call.get_by_test_id("tool-output")
    expect(output).to_be_hidden()
    long_call.locator("summary").click()
    expect(output).to_be_visible()
    expect(output).to_contain_text("The order history, line by line.")
    # The final state starts open (it is short) and reads as pretty JSON.
    expect(page.get_by_test_id("final-state")).to_contain_text('"refunded": true')
    assert not console, console
