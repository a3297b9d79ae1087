"""Untrusted content is inert: script-injection payloads planted in every field a person or an
import fills (tests/xss_plant.py) never run, never become markup, and every HTML page carries
a Content-Security-Policy with a fresh nonce.

Two doors onto one corpus: a fast server-side check of each page's HTML (precise messages),
and headless Chromium opening every page and failing on any dialog, console error, CSP
violation, page error or marked element."""

from __future__ import annotations

import base64
import html
import re
import time
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Error as PlaywrightError

from annotation import import_jobs
from annotation.models import ImportJob
from grading import services as grading_services
from grading.datasets import snapshots
from grading.models import DatasetSnapshot, GradingRun
from tests.conftest import wait_for
from tests.xss_payloads import ALL, PAYLOADS, RAW_MARKUP
from tests.xss_plant import plant

NONCE = re.compile(r"script-src [^;]*'nonce-([A-Za-z0-9_\-]+)'")
URL_ATTRS = {"href", "src", "action", "formaction", "data", "xlink:href", "poster", "background"}
BAD_SCHEMES = ("javascript:", "vbscript:", "data:text", "data:application", "data:image/svg")
JSON_SCRIPT = re.compile(r'<script id="[^"]*" type="application/json">.*?</script>', re.DOTALL)


def test_the_policy_is_strict():
    csp = settings.SECURE_CSP
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert "'unsafe-inline'" not in csp["style-src"]
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["form-action"] == ["'self'"]


def test_each_payload_marks_itself():
    numbers = [n for n, _ in PAYLOADS]
    assert len(numbers) == len(set(numbers))
    for n, payload in PAYLOADS:
        decoded = html.unescape(payload) + "".join(
            base64.b64decode(b).decode() for b in re.findall(r"base64,([\w+/=]+)", payload)
        )
        assert f"alert({n})" in decoded, payload


class _Tags(HTMLParser):
    """Every start tag that script-injection would leave behind."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        here = f"<{tag} {' '.join(f'{k}={v!r}' for k, v in attrs)[:160]}>"
        names = dict(attrs)
        for name, value in attrs:
            value = re.sub(r"[\s\x00-\x1f]", "", (value or "")).lower()
            if name == "data-xss":
                self.problems.append(f"a marked element {here}")
            elif name.startswith("on"):
                self.problems.append(f"an inline handler {name} on {here}")
            elif name == "style":
                self.problems.append(f"a style attribute on {here}")
            elif name.startswith("hx-on"):
                self.problems.append(f"an hx-on attribute on {here}")
            elif name in URL_ATTRS and value.startswith(BAD_SCHEMES):
                self.problems.append(f"a {value.split(':')[0]}: URL in {name} of {here}")
            elif name == "srcdoc":
                self.problems.append(f"a srcdoc on {here}")
        if tag in {"iframe", "frame", "frameset", "object", "embed", "base", "style"}:
            self.problems.append(f"a <{tag}> element {here}")
        if tag == "meta" and "http-equiv" in names:
            self.problems.append(f"a meta http-equiv {here}")
        if tag == "script":
            src = names.get("src")
            if src is None and names.get("type") != "application/json":
                self.problems.append(f"an inline script {here}")
            if src is not None and not src.startswith("/static/"):
                self.problems.append(f"a script from elsewhere {here}")


def html_problems(page: str) -> list[str]:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    problems = list(parser.problems)
    # json_script escapes <, > and &: what is inside is JSON text, not markup.
    text = JSON_SCRIPT.sub("", page)
    for payload in RAW_MARKUP:
        if payload in text:
            at = text.index(payload)
            problems.append(f"the payload {payload!r} unescaped: …{text[max(0, at - 80) : at]}")
    return problems


def nonce_of(response) -> str | None:
    header = response.headers.get("Content-Security-Policy", "")
    found = NONCE.search(header)
    return found.group(1) if found else None


# --- Server side: fast, precise ------------------------------------------------------------


def _grade_here(run):
    """What the worker's tasks do, in this process: start, grade each response, finish."""
    grading_services.run_start(run_id=run.pk, enqueue=False)
    for response_id in run.scores.values_list("response_id", flat=True):
        grading_services.grade_response(run_id=run.pk, response_id=response_id)
    grading_services.run_finish_if_done(run_id=run.pk)


def _build_here(snapshot):
    snapshots.snapshot_build(snapshot_id=snapshot.pk)


def _import_here(job):
    import_jobs.import_job_run(job_id=job.pk)


@pytest.mark.django_db
def test_pages_escape_every_payload_and_carry_a_fresh_nonce(sim):
    planted = plant(
        judge_url=sim.url,
        sim=sim,
        grade=_grade_here,
        build_snapshot=_build_here,
        run_import=_import_here,
    )
    clients: dict[str, Client] = {}
    nonces: list[str] = []
    problems: list[str] = []
    for username, url in planted.pages:
        if username not in clients:
            clients[username] = Client()
            user = next(u for u in planted.users.values() if u.username == username)
            clients[username].force_login(user)
        response = clients[username].get(url)
        assert response.status_code == 200, f"{url} as {username}: {response.status_code}"
        assert response["Content-Type"].startswith("text/html"), url
        assert "Content-Security-Policy" in response.headers, f"{url} has no CSP header"
        html = response.content.decode()
        if "<html" in html:  # a whole page (htmx fragments need no nonce of their own)
            nonce = nonce_of(response)
            assert nonce, f"{url}: no nonce in {response.headers['Content-Security-Policy']}"
            assert f'nonce="{nonce}"' in html, f"{url}: its scripts do not carry the nonce"
            nonces.append(nonce)
        problems += [f"{url} ({username}): {p}" for p in html_problems(html)]
    assert not problems, "\n".join(problems)
    assert len(set(nonces)) == len(nonces), "a nonce was used twice"


def test_the_checker_sees_what_it_looks_for():
    """The server-side check fails on each kind of leak it claims to catch."""
    for leak in [
        "<p data-xss=1>x</p>",
        "<img src=x onerror=alert(1)>",
        '<a href=" JaVaScRiPt:alert(1)">x</a>',
        "<script>alert(1)</script>",
        "<iframe srcdoc=x></iframe>",
        '<div style="color:red">',
        '<div hx-on:click="alert(1)">',
        "<svg><a xlink:href='javascript:alert(1)'>x</a></svg>",
    ]:
        assert html_problems(f"<html><body>{leak}</body></html>"), leak
    assert not html_problems(
        '<html><script id="d" type="application/json">{"a": "\\u003Cscript\\u003E"}</script>'
        '<script src="/static/assay.js" nonce="n" defer></script>'
        "<p>&lt;script data-xss=1&gt;alert(1)&lt;/script&gt;</p></html>"
    )


# --- In Chromium: nothing runs, nothing is injected ----------------------------------------

WATCH = """
window.__xss = { violations: [] };
document.addEventListener("securitypolicyviolation", function (e) {
  window.__xss.violations.push(e.violatedDirective + " " + (e.blockedURI || "inline") +
    " at " + (e.sourceFile || "") + ":" + e.lineNumber + " " + (e.sample || ""));
});
"""

DETECT = """
() => {
  const bad = [];
  const schemes = /^(javascript|vbscript|data:text|data:application|data:image\\/svg)/;
  for (const el of document.querySelectorAll("*")) {
    const tag = el.tagName.toLowerCase();
    for (const a of el.attributes) {
      const n = a.name.toLowerCase(), v = a.value.replace(/[\\s\\x00-\\x1f]/g, "").toLowerCase();
      if (n === "data-xss") bad.push("marked element <" + tag + " data-xss=" + a.value + ">");
      else if (n.startsWith("on")) bad.push("handler " + n + " on <" + tag + ">");
      else if (n.startsWith("hx-on")) bad.push(n + " on <" + tag + ">");
      else if (["href", "src", "action", "formaction", "data", "xlink:href"].includes(n) &&
               schemes.test(v)) bad.push(n + "=" + v.slice(0, 40) + " on <" + tag + ">");
    }
    if (["iframe", "frame", "object", "embed", "base"].includes(tag)) bad.push("<" + tag + ">");
    if (tag === "meta" && el.hasAttribute("http-equiv")) bad.push("<meta http-equiv>");
    if (tag === "style" && !el.nonce) bad.push("<style> without nonce");
    if (tag === "script" && !el.src && el.type !== "application/json") bad.push("inline <script>");
  }
  return { bad: bad, violations: window.__xss ? window.__xss.violations : [] };
}
"""


def _grade_on_worker(run):
    grading_services.run_start(run_id=run.pk)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == GradingRun.Status.COMPLETED,
        what=f"run {run.pk} to finish on the worker",
    )


def _build_on_worker(snapshot):
    wait_for(
        lambda: (
            DatasetSnapshot.objects.get(pk=snapshot.pk).status
            in (DatasetSnapshot.Status.READY, DatasetSnapshot.Status.FAILED)
        ),
        what="the snapshot to be built",
    )


def _import_on_worker(job):
    wait_for(
        lambda: (
            ImportJob.objects.get(pk=job.pk).status
            in (ImportJob.Status.DONE, ImportJob.Status.FAILED)
        ),
        what="the import to finish on the worker",
    )


def _context_for(browser, base: str, user):
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base}])
    context.add_init_script(WATCH)
    return context


def _watched(context) -> tuple[object, list[str]]:
    """A new page and the list its dialogs, console errors and page errors go to."""
    page = context.new_page()
    events: list[str] = []
    page.on("dialog", lambda d: (events.append(f"dialog {d.message!r}"), d.dismiss()))
    page.on(
        "console",
        lambda m: events.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda exc: events.append(f"page error: {exc}"))
    return page, events


def _inspect(page, events: list[str], where: str) -> list[str]:
    # Open every <details>: a handler planted on one would fire on toggle.
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    page.wait_for_timeout(150)  # handlers that fire after load (focus, toggle)
    seen = page.evaluate(DETECT)
    found = events + seen["bad"] + [f"CSP violation {v}" for v in seen["violations"]]
    events.clear()
    return [f"{where}: {item}" for item in found]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_chromium_runs_no_payload_on_any_page(browser, live_server, celery_worker, sim):
    started = time.monotonic()
    base = live_server.url
    planted = plant(
        judge_url=sim.url,
        sim=sim,
        grade=_grade_on_worker,
        build_snapshot=_build_on_worker,
        run_import=_import_on_worker,
    )
    by_name = {u.username: u for u in planted.users.values()}
    problems: list[str] = []
    nonces: list[str] = []
    contexts = {}
    try:
        for username, url in planted.pages:
            if "/flags/" in url:
                continue  # an htmx fragment: the rubric page loads it (checked below)
            if username not in contexts:
                contexts[username] = _context_for(browser, base, by_name[username])
            page, events = _watched(contexts[username])
            response = page.goto(base + url, wait_until="load")
            assert response is not None and response.status == 200, f"{url}: {response}"
            header = response.headers.get("content-security-policy", "")
            found = NONCE.search(header)
            if not found:
                problems.append(f"{url}: no CSP nonce in {header!r}")
            else:
                nonces.append(found.group(1))
            problems += _inspect(page, events, f"{url} ({username})")
            charts = page.locator("canvas[data-chart][data-drawn='1']")
            if url.startswith("/runs/") and url.count("/") == 3 and charts.count() == 0:
                problems.append(f"{url}: Chart.js drew no chart under the CSP")
            if "/agreement/" in url and page.locator("canvas[data-drawn='1']").count() == 0:
                problems.append(f"{url}: the agreement chart was not drawn under the CSP")
            if url == planted.editor:
                # htmx runs under the CSP: the calibration flags fragment loads itself.
                try:
                    page.locator("div[hx-get*='/flags/']").wait_for(state="detached", timeout=5000)
                except PlaywrightError:
                    problems.append(f"{url}: htmx did not load the flags fragment")
            page.close()

        # Content that arrives by htmx swaps: a criterion typed into the editor, and a
        # response tried against the rubric whose judge explains itself with payloads.
        page, events = _watched(contexts[planted.users["admin"].username])
        page.goto(base + planted.editor)
        rows = page.get_by_test_id("criterion")
        before = rows.count()
        page.fill("#new-criterion-text", ALL)
        page.fill("#new-criterion-points", "1")
        with page.expect_response(lambda r: "/criteria/" in r.url):
            page.click("button:has-text('Add criterion')")
        page.wait_for_function(f"document.querySelectorAll('[data-criterion]').length > {before}")
        problems += _inspect(page, events, f"{planted.editor} after adding a criterion")
        # Indentation by group depth comes from the stylesheet now, not style="" attributes.
        indent = page.locator("li[data-criterion][data-depth='1']").first.evaluate(
            "li => getComputedStyle(li).marginLeft"
        )
        assert indent == "24px", f"a grouped criterion is indented {indent}"
        # A control marked data-autosubmit submits its form (it had an inline onchange), with
        # the draft's current revision although the add above has moved it on since load.
        with page.expect_navigation():
            page.check("input[name=include_reference]")
        assert page.locator("input[name=include_reference]").is_checked()
        problems += _inspect(page, events, f"{planted.editor} after an autosubmit")
        sim.config.explanation = ALL
        page.goto(base + planted.tryit)
        page.fill("#try-response", ALL)
        with page.expect_response(lambda r: "/try/" in r.url and r.request.method == "POST"):
            page.click("button:has-text('Grade now')")
        page.get_by_test_id("try-score").wait_for()
        problems += _inspect(page, events, f"{planted.tryit} after grading")
        with page.expect_response(lambda r: "/try/" in r.url and r.request.method == "POST"):
            page.click("button:has-text('Preview the judge prompt')")
        page.locator("[data-testid^=prompt-]").first.wait_for()
        problems += _inspect(page, events, f"{planted.tryit} after the prompt preview")
        page.close()
    finally:
        sim.config.__init__()
        for context in contexts.values():
            context.close()
    assert not problems, "\n".join(problems)
    assert len(set(nonces)) == len(nonces) and nonces, "every page has its own nonce"
    assert time.monotonic() - started < 90, "keep this test under 90 s"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_api_docs_and_admin_work_under_the_csp(browser, live_server, personas):
    context = _context_for(browser, live_server.url, personas.admin)
    # The admin's pages name no icon, so Chromium asks for /favicon.ico: not our concern here.
    context.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    # Nothing from elsewhere: Redoc's own Redocly logo included (static/redoc-offline.js).
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith((live_server.url, "data:", "blob:"))
            else errors.append(f"request to {r.url}")
        ),
    )
    try:
        for url, ready in (
            ("/api/docs/", ".swagger-ui .opblock"),
            ("/api/redoc/", "#redoc-container h1"),
            ("/admin/login/", "#login-form"),
        ):
            response = page.goto(live_server.url + url)
            assert NONCE.search(response.headers["content-security-policy"]), url
            page.locator(ready).first.wait_for(timeout=20_000)
            if url == "/api/redoc/":  # the footer's logo is asked for once the menu is drawn
                page.get_by_text("API docs by Redocly").wait_for(timeout=20_000)
                page.wait_for_timeout(300)
            violations = page.evaluate("() => window.__xss.violations")
            assert not violations, f"{url}: {violations}"
        assert not errors, errors
    finally:
        context.close()
