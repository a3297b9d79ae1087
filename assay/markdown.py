"""Untrusted Markdown to safe HTML: markdown-it renders, nh3 (Ammonia) sanitizes."""

from __future__ import annotations

import functools

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "strong",
    "em",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "del",
}


# Pages show the same texts again and again (a rubric's guidance, a response two annotators
# grade); rendering and sanitizing one takes milliseconds, so each process keeps the HTML of
# the texts it rendered last. Long texts are rendered each time rather than held.
CACHED_CHARS = 20_000


def render(text: str) -> str:
    text = text or ""
    return _render(text) if len(text) <= CACHED_CHARS else _render.__wrapped__(text)


@functools.lru_cache(maxsize=2048)
def _render(text: str) -> str:
    html = _md.render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
