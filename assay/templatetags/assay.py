from django import template
from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from assay import markdown
from rubrics import wording

register = template.Library()


@register.filter
def markdown_safe(text: str) -> str:
    """Render untrusted Markdown; the output is sanitized by nh3 before it is marked safe."""
    return mark_safe(markdown.render(text))  # noqa: S308 - sanitized by nh3 just above


@register.filter
def indent(depth) -> int:
    """A group depth for the stylesheet's indentation rules (assay.css stops at 12 levels)."""
    return min(int(depth), 12)


@register.filter
def percent(value) -> str:
    if value is None:
        return "—"
    return f"{100 * float(value):.0f}%"


@register.filter
def score(value) -> str:
    if value is None:
        return "—"
    return f"{float(value):.2f}"


@register.filter
def points(value) -> str:
    return f"{float(value):+g}" if value is not None else ""


@register.simple_tag
def signup_open() -> bool:
    """Whether anyone may create an account here (ASSAY_SIGNUP)."""
    return bool(settings.SIGNUP_OPEN)


SHORT_HASH = 12  # a unique prefix this long names a grader everywhere a hash is taken


@register.simple_tag
def hash_chip(value: str, testid: str = "hash"):
    """A hash as pages show it: its first 12 characters (the full hash on hover) and a button
    that copies the full hash (static/assay.js, `data-copy`)."""
    if not value:
        return ""
    return format_html(
        '<code class="hash" title="{}" data-testid="{}">{}</code> <button type="button" '
        'class="copy" data-copy="{}" title="Copy the full hash">Copy</button>',
        value,
        testid,
        value[:SHORT_HASH],
        value,
    )


@register.filter
def json_value(value) -> str:
    """A check's JSON value in a plain field of the editor (rubrics.wording.editable_value)."""
    return wording.editable_value(value)


@register.filter
def check_fields(check) -> dict:
    """The values of a check's plain fields in the editor (rubrics.wording.check_fields)."""
    return wording.check_fields(check if isinstance(check, dict) else None)


@register.filter
def state_test(check) -> str:
    """equals, contains or within: how a final_state check tests its value."""
    return wording.state_test(check if isinstance(check, dict) else None)
