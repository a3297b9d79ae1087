"""Walk a running Assay as each demo persona in headless Chromium, as a new user would.

    ./scripts/demo &                       # or any running Assay with the demo data
    .venv/bin/python bench/walk.py [--base-url http://127.0.0.1:8000] [--max-pages 150]

For each persona it logs in, then follows every same-origin link it can reach (breadth
first, GET only; never logout or a download), and records for each page its status, its
load time (navigation start to the load event), console errors and uncaught page errors.
A page is a problem when it answers 4xx/5xx (a link a role cannot open should not be shown
to it), logs a console error, throws, or takes over `--slow-ms`.

Prints one JSON line: per persona the pages walked, p95 and max load time, and the problems;
exits 1 when there is any problem.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import deque
from urllib.parse import urldefrag, urljoin, urlsplit

PERSONAS = ["demo", "dr-lee", "annotator", "annotator2", "reviewer", "engineer"]
PASSWORD = "assay-demo"  # noqa: S105 (the demo personas' published password)
# Where each walk starts: the home page and the API's two documentation pages.
START = ("/", "/api/docs/", "/api/redoc/")
# Never followed: they end the session, change state by GET, or download files.
SKIP = ("/logout", "/admin/", "/download", "/file/", "/api/", "/export", "/media/", "/static/")


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def walk_persona(browser, base: str, username: str, max_pages: int, slow_ms: float) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    events: list[str] = []
    page.on("pageerror", lambda exc: events.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda m: events.append(f"console error: {m.text}") if m.type == "error" else None,
    )
    page.goto(urljoin(base, "/login/"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state("load")
    if "/login/" in page.url:
        context.close()
        return {"pages": 0, "problems": [f"could not log in as {username}"], "times_ms": []}

    origin = urlsplit(base).netloc
    queue: deque[str] = deque(urljoin(base, start) for start in START)
    seen: set[str] = set(queue)
    problems: list[str] = []
    times: list[float] = []
    while queue and len(times) < max_pages:
        url = queue.popleft()
        events.clear()
        try:
            response = page.goto(url, wait_until="load")
        except Exception as exc:  # a timeout or a crash of the page: a finding, not an abort
            problems.append(f"{url}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        elapsed = page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0];"
            " return n ? n.loadEventEnd - n.startTime : 0; }"
        )
        times.append(elapsed)
        path = urlsplit(url).path
        status = response.status if response else 0
        if status >= 400:
            problems.append(f"{path}: HTTP {status}")
        if elapsed > slow_ms:
            problems.append(f"{path}: {elapsed:.0f} ms")
        problems.extend(f"{path}: {event}" for event in events)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            href = urldefrag(href)[0]
            parts = urlsplit(href)
            if parts.scheme not in ("http", "https") or parts.netloc != origin:
                continue
            downloads = "download=1" in parts.query  # a file saved, not a page
            if any(marker in parts.path for marker in SKIP) or downloads or href in seen:
                continue
            seen.add(href)
            queue.append(href)
    context.close()
    return {"pages": len(times), "problems": problems, "times_ms": times}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--max-pages", type=int, default=150, help="per persona")
    parser.add_argument("--slow-ms", type=float, default=1000.0)
    parser.add_argument("--personas", default=",".join(PERSONAS))
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("ASSAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    figures: dict[str, object] = {"bench": "walk", "base_url": args.base_url, "personas": {}}
    failed = False
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        for username in args.personas.split(","):
            log(f"walking as {username}")
            result = walk_persona(browser, args.base_url, username, args.max_pages, args.slow_ms)
            times = result.pop("times_ms")
            result["p95_ms"] = round(percentile(times, 0.95), 1)
            result["max_ms"] = round(max(times, default=0.0), 1)
            figures["personas"][username] = result
            failed = failed or bool(result["problems"])
            for problem in result["problems"]:
                log(f"  {username}: {problem}")
        browser.close()
    figures["pass"] = not failed
    print(json.dumps(figures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
