"""Blind annotation: an annotator never learns which model wrote a response, nor its sample.

Walks every row of tests/roles_matrix.py the annotator may read (pages in a live server with
the persona signed in, also as htmx asks for them; every API GET with the persona's token)
and looks for the project's model names and for sample identity in every body."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.test import Client

from annotation.content.episode import Episode
from annotation.models import Response
from rubrics import tokens
from tests import factories
from tests.roles_matrix import ROWS, build_world, row_url

pytestmark = pytest.mark.django_db(transaction=True)

PREFIX = "zq9-"  # the world's model is "zq9-m"; nothing else in it contains that
SECRET_MODEL = "northwind-70b-blindtest"
# "sample 3", "sample #3", "sample_index": 3, "Sample: 3"
SAMPLE = re.compile(r"sample(?:[ _-]?index)?\W{0,4}\d", re.IGNORECASE)
READS = [r for r in ROWS if r.method == "get" and r.expected["annotator"] == 200]


def fetch(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the live server
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def leaks(body: str, models: list[str]) -> list[str]:
    found = [f"model {m!r}" for m in models if m in body]
    found += [f"sample identity {m.group(0)!r}" for m in SAMPLE.finditer(body)]
    return found


@pytest.fixture
def blind_world(personas):
    p = personas
    world = build_world(p.project, p.admin, p.annotator, p.reviewer, prefix=PREFIX)
    factories.import_responses(
        p.project,
        [{"task_id": world.task, "model": SECRET_MODEL, "response": "Rest.", "sample_index": 3}],
    )
    # The world's queued response becomes an episode whose producer kept the model, the
    # provider and the sample in its metadata: the trajectory view must show none of them.
    episode = Episode.parse(
        {
            "messages": [
                {"role": "user", "content": "What should I do?"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "function": {"name": "lookup", "arguments": {}}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "rest helps"},
                {"role": "assistant", "content": "Rest."},
            ],
            "metadata": {
                "steps": 2,
                "tokens": 40,
                "model": f"{PREFIX}m",
                "provider": SECRET_MODEL,
                "sample_index": 3,
            },
        }
    )
    Response.objects.filter(model=f"{PREFIX}m").update(
        content=episode.stored(), text=episode.final_text
    )
    return world


def test_annotators_reach_no_model_and_no_sample_anywhere(live_server, personas, blind_world):
    p, world = personas, blind_world
    models = sorted(set(Response.objects.values_list("model", flat=True)))
    assert f"{PREFIX}m" in models and SECRET_MODEL in models
    client = Client()
    client.force_login(p.annotator)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    _, key = tokens.token_create(user=p.annotator, name="blind", scopes=["read"])
    problems: list[str] = []
    for row in READS:
        url = live_server.url + row_url(row, world)
        if row.kind == "page":
            asks = {"page": {"Cookie": cookie}, "htmx": {"Cookie": cookie, "HX-Request": "true"}}
        else:
            asks = {"api": {"Authorization": f"Token {key}"}}
        for how, headers in asks.items():
            status, body = fetch(url, headers)
            if status != 200:
                problems.append(f"{row} ({how}): {status}")
            problems += [f"{row} ({how}): {leak}" for leak in leaks(body, models)]
    assert not problems, "\n".join(problems)


def test_a_model_filter_is_no_oracle_for_annotators(live_server, personas, blind_world):
    """Asking for a model's responses answers the same whether the model exists or not, and
    the answer names no model."""
    _, key = tokens.token_create(user=personas.annotator, name="blind", scopes=["read"])
    headers = {"Authorization": f"Token {key}"}
    base = f"{live_server.url}/api/projects/{blind_world.slug}/responses/"
    known = fetch(f"{base}?model={SECRET_MODEL}", headers)
    unknown = fetch(f"{base}?model=no-such-model", headers)
    assert known[0] == unknown[0] == 403
    assert SECRET_MODEL not in known[1]
    for path in ("responses/models/", "responses/"):
        status, body = fetch(f"{live_server.url}/api/projects/{blind_world.slug}/{path}", headers)
        assert status == 403 and SECRET_MODEL not in body, path
