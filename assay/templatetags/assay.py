from django import template
from django.conf import settings
from django.utils.safestring import mark_safe

from assay import markdown

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
