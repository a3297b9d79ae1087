"""Whole numbers read from a request: the one parser every page and API view uses for them.

`str.isdigit()` is true of "²" and "٣", which `int()` then refuses (or reads as 3): a guard
written with it ends in a 500. Here only ASCII digits count, the value is bounded, and
anything else is a 400 that names the parameter: pages answer it through
`assay.middleware.BadInputMiddleware`, the API through DRF, as any ValidationError.
"""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework.exceptions import ValidationError

# PostgreSQL's integer: ids, version numbers and revisions all fit; a larger one names nothing.
MAX_WHOLE_NUMBER = 2**31 - 1


class ParameterError(ValidationError):
    """A query or form parameter that is not what it must be; `name` is the parameter."""

    def __init__(self, name: str, message: str):
        super().__init__({name: [message]})
        self.name = name
        self.message = message


def whole_number(
    params: Mapping,
    name: str,
    default: int | None = None,
    *,
    minimum: int = 0,
    maximum: int = MAX_WHOLE_NUMBER,
) -> int | None:
    """`params[name]` as an int in [minimum, maximum]; `default` when absent or blank;
    ParameterError naming `name` for anything else (Unicode digits, signs, "1e3", huge)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, int) and not isinstance(raw, bool):  # a JSON body's number
        number = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 12:
        number = int(raw)
    else:
        raise ParameterError(name, f"A whole number from {minimum} to {maximum}, in digits 0-9.")
    if not minimum <= number <= maximum:
        raise ParameterError(name, f"A whole number from {minimum} to {maximum}.")
    return number
