"""No page links a role to a page it cannot open, a refusal is the site's own page with the
reason and a way back, and an htmx fragment opened directly is a full page.

For each role, every page of tests/roles_matrix.py it may read is opened, and every link on
it (`<a href>` to this site) is followed as the same person."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.test import Client

from tests.roles_matrix import ROLES, ROWS, build_world, row_url

pytestmark = pytest.mark.django_db

HREF = re.compile(r'<a\b[^>]*\bhref="(/[^"#]*)"')
SKIP = ("/static/", "/admin/", "/api/schema", "/api/docs", "/api/redoc", "/logout")


@pytest.fixture
def world(personas):
    p = personas
    return build_world(p.project, p.admin, p.annotator, p.reviewer)


@pytest.mark.parametrize("role", ROLES)
def test_no_page_links_a_role_to_a_page_it_cannot_open(role, personas, world):
    client = Client()
    client.force_login(personas.by_role()[role])
    pages = [
        row_url(r, world)
        for r in ROWS
        if r.kind == "page" and r.method == "get" and r.expected[role] == 200
    ]
    seen: set[str] = set()
    broken = []
    for url in pages:
        page = client.get(url)
        if page.streaming or not page["Content-Type"].startswith("text/html"):
            continue  # a download
        body = page.content.decode(errors="replace")
        for link in map(unescape, HREF.findall(body)):
            if link in seen or link.startswith(SKIP):
                continue
            seen.add(link)
            status = client.get(link).status_code
            if status in (403, 404) or status >= 500:
                broken.append(f"{url} links {link}: {status}")
    assert seen, "no links followed"
    assert not broken, "\n".join(broken)


def test_a_refusal_is_the_sites_page_with_the_reason_and_a_way_back(personas, world):
    client = Client()
    client.force_login(personas.annotator)
    reply = client.get(f"/runs/{world.run}/")
    assert reply.status_code == 403
    body = reply.content.decode()
    assert 'data-testid="problem"' in body and "<html" in body
    assert "does not allow this" in body  # the reason
    assert 'href="/"' in body  # a way back
    # Off the queue: the same page, not a bare text.
    other = Client()
    other.force_login(personas.engineer)
    reply = other.post(f"/queues/{world.queue}/next/")
    assert reply.status_code == 403 and 'data-testid="problem"' in reply.content.decode()


def test_an_htmx_fragment_opened_directly_is_a_full_page(personas, world):
    client = Client()
    client.force_login(personas.author)
    url = f"/calibration/versions/{world.version}/flags/"
    assert "<html" not in client.get(url, HTTP_HX_REQUEST="true").content.decode()
    direct = client.get(url)
    assert direct.status_code == 200 and "<html" in direct.content.decode()
