"""Checked criteria over the files a response delivers: data, never code, no judge call.

    {"type": "file_present", "kind": "xlsx", "name": "debt*.xlsx", "min": 1}
    {"type": "xlsx_cell", "name": "debt*", "sheet": "Debt", "cell": "B7",
     "value": 1200000, "tolerance": 0.01, "relative": true}     # within 1% of 1,200,000
    {"type": "xlsx_cell", "cell": "A1", "equals": "Total"}       # text: case and spaces aside
    {"type": "xlsx_cell", "cell": "B2:B10", "aggregate": "sum", "value": 5e6, "tolerance": 1}
    {"type": "xlsx_cell", "cell": "C2:C10", "aggregate": "every", "equals": "paid"}
    {"type": "pdf_max_pages", "name": "*.pdf", "max": 10, "min": 2}
    {"type": "file_text", "kind": "docx", "name": "memo*",
     "check": {"type": "contains", "value": "EBITDA", "case_sensitive": false}}

Which files: the response's deliverables, the image and file parts of its assistant turns and
tool outputs, in order. Files in the task's own messages (user, system) are inputs, not
deliverables, and never count. `kind` is one of KINDS ("image": PNG or JPEG, as stored;
"any": every kind); `name` is an optional glob on the file's name (``*`` and ``?``, case
ignored). `xlsx_cell` reads the first XLSX or CSV file whose name matches, `pdf_max_pages`
the first PDF, `file_text` the first file of its kind: the check names the file it read.

What a check reads of a file is `rubrics.files.store.converted`, the one conversion judges and
pages read: for a workbook, the values Excel computed and saved with it (openpyxl
``data_only``); Assay never evaluates a formula. So a cell whose formula has no saved value
(a workbook written by a program that does not calculate, openpyxl among them) is **unmet**,
and the reason says which formula has no value and how to get one (open and save the file in
Excel or LibreOffice). A CSV has one sheet, whatever `sheet` names. A number is compared
within `tolerance`, absolute, or (``relative``) a fraction of the expected value (0.01 is 1%);
text is compared trimmed and case-insensitively. A range (``B2:B10``) needs an `aggregate`:
``every`` (each cell equals; an empty cell does not) or ``sum`` (of its numbers, empty cells
left out as in Excel; a text cell is unmet, naming it).

No such file, a sheet or cell that is not there, a file that cannot be read or converted:
unmet, with a reason naming the file, the sheet and the cell. Never an error, never a 500.
"""

from __future__ import annotations

import fnmatch
import io
import logging
import math
import re

from rubrics.files.sniff import IMAGE_KINDS, FileRefused

logger = logging.getLogger(__name__)

FILE_CHECK_TYPES = ("file_present", "xlsx_cell", "pdf_max_pages", "file_text")
KINDS = ("any", "image", "pdf", "docx", "xlsx", "csv", "pptx", "png", "jpeg")
TEXT_KINDS = ("any", "pdf", "docx", "xlsx", "csv", "pptx")  # images have no text to check
SHEET_KINDS = ("xlsx", "csv")
AGGREGATES = ("every", "sum")
INNER_TYPES = ("contains", "not_contains", "regex", "number", "json_field")
DELIVERED_BY = ("assistant", "tool")
MAX_NAME = 200  # a name glob or a sheet name
MAX_FILES = 1000  # file_present's "at least"
MAX_PAGES = 1_000_000
MAX_RANGE_CELLS = 10_000  # as many as a conversion reads (convert.MAX_CELLS)
MAX_COLUMN, MAX_ROW = 16_384, 1_048_576  # Excel's: XFD, 1048576
CELL = re.compile(r"^\$?([A-Z]{1,3})\$?([1-9][0-9]{0,6})$")
THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def _error(field: str, message: str):
    from rubrics.checks import CheckError

    return CheckError(field, message)


# --- Validation -------------------------------------------------------------------------------


def validate(kind: str, check: dict) -> dict:
    """A file check, normalised, or CheckError naming the field."""
    out: dict = {"type": kind}
    name = _name_glob(check)
    if kind in ("file_present", "file_text"):
        out["kind"] = _kind(check, TEXT_KINDS if kind == "file_text" else KINDS)
    if name:
        out["name"] = name
    if kind == "file_present":
        least = check.get("min")
        out["min"] = 1 if least in (None, "") else _whole(least, "check.min", 1, MAX_FILES)
        return out
    if kind == "pdf_max_pages":
        out["max"] = _whole(check.get("max"), "check.max", 1, MAX_PAGES)
        least = check.get("min")
        if least not in (None, ""):
            out["min"] = _whole(least, "check.min", 1, out["max"])
        return out
    if kind == "file_text":
        return {**out, "check": _inner(check.get("check"))}
    return {**out, **_cell_check(check)}


def _name_glob(check: dict) -> str:
    name = check.get("name")
    if name is None:
        return ""
    if not isinstance(name, str) or len(name.strip()) > MAX_NAME:
        raise _error(
            "check.name",
            f"give a file name or a glob (memo*.docx) of at most {MAX_NAME} characters",
        )
    return name.strip()


def _kind(check: dict, allowed: tuple[str, ...]) -> str:
    kind = check.get("kind")
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    if kind in ("", None):
        kind = "any"
    if kind == "jpg":
        kind = "jpeg"
    if kind not in allowed:
        if kind in KINDS:  # an image kind for file_text
            raise _error(
                "check.kind", f"{kind} files have no text to check; one of {', '.join(allowed)}"
            )
        raise _error("check.kind", f"unknown kind {str(kind)[:40]!r}; one of {', '.join(allowed)}")
    return kind


def _whole(value: object, field: str, least: int, most: int) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())  # the editor's plain fields send text
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise _error(field, f"give a whole number from {least} to {most:,}")
    return value


def _number(value: object, field: str) -> float:
    """A finite number; text as typed in the editor ("1,200,000" and "6.2" alike)."""
    if isinstance(value, bool):
        raise _error(field, "give a number")
    if isinstance(value, str):
        value = value.strip()
        if THOUSANDS.match(value):
            value = value.replace(",", "")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # 10**400 is no float
        raise _error(field, "give a number") from None
    if not math.isfinite(number):
        raise _error(field, "give a finite number")
    return number


def parse_cell(text: str) -> tuple[int, int]:
    """(column, row), both from 1, of an address such as B7 or $B$7; ValueError otherwise."""
    match = CELL.match(text)
    if not match:
        raise ValueError(text)
    column = 0
    for letter in match.group(1):
        column = column * 26 + ord(letter) - 64
    row = int(match.group(2))
    if column > MAX_COLUMN or row > MAX_ROW:
        raise ValueError(text)
    return column, row


def address(column: int, row: int) -> str:
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row}"


def cells_of(cell: str) -> list[str]:
    """The addresses of a validated cell or range, row by row."""
    first, _, last = cell.partition(":")
    (c1, r1), (c2, r2) = parse_cell(first), parse_cell(last or first)
    return [address(c, r) for r in range(r1, r2 + 1) for c in range(c1, c2 + 1)]


def _cell(check: dict) -> str:
    raw = check.get("cell")
    if not isinstance(raw, str) or not raw.strip():
        raise _error("check.cell", "give a cell (B7) or a range (B2:B10)")
    text = raw.strip().upper().replace(" ", "")
    parts = text.split(":")
    try:
        if len(parts) > 2:
            raise ValueError(text)
        corners = [parse_cell(p) for p in parts]
    except ValueError:
        raise _error(
            "check.cell",
            f"{raw.strip()[:20]!r} is not a cell address; give a column and a row (B7) or a "
            f"range (B2:B10), up to column XFD and row {MAX_ROW:,}",
        ) from None
    if len(corners) == 1:
        return address(*corners[0])
    (c1, r1), (c2, r2) = corners
    if c2 < c1 or r2 < r1:
        raise _error(
            "check.cell", "a range runs from its top-left cell to its bottom-right (B2:B10)"
        )
    if (c2 - c1 + 1) * (r2 - r1 + 1) > MAX_RANGE_CELLS:
        raise _error("check.cell", f"a range of at most {MAX_RANGE_CELLS:,} cells")
    return f"{address(c1, r1)}:{address(c2, r2)}"


def _cell_check(check: dict) -> dict:
    out: dict = {}
    sheet = check.get("sheet")
    if sheet not in (None, ""):
        if not isinstance(sheet, str) or not sheet.strip() or len(sheet) > MAX_NAME:
            raise _error(
                "check.sheet",
                f"give the sheet's name (at most {MAX_NAME} characters), or none for the first",
            )
        out["sheet"] = sheet.strip()
    out["cell"] = _cell(check)
    if ":" in out["cell"]:
        aggregate = check.get("aggregate")
        if aggregate not in AGGREGATES:
            raise _error("check.aggregate", "a range needs every (each cell equals) or sum")
        out["aggregate"] = aggregate
    given = [f for f in ("value", "equals") if check.get(f) not in (None, "")]
    if len(given) != 1:
        raise _error("check.value", "give exactly one of value (a number) or equals (a text)")
    if given[0] == "equals":
        if out.get("aggregate") == "sum":
            raise _error("check.value", "a sum is a number: give value, not equals")
        equals = check["equals"]
        if not isinstance(equals, str) or len(equals) > 1000:
            raise _error(
                "check.equals", "give the text the cell must hold (at most 1,000 characters)"
            )
        out["equals"] = equals
        return out
    out["value"] = _number(check["value"], "check.value")
    tolerance = check.get("tolerance")
    tolerance = 0.0 if tolerance in (None, "") else _number(tolerance, "check.tolerance")
    if tolerance < 0:
        raise _error("check.tolerance", "must be a number >= 0")
    out["tolerance"] = tolerance
    relative = check.get("relative", False)
    if relative in ("on", "true", "1"):
        relative = True
    if relative in ("", "false", "0", None):
        relative = False
    if not isinstance(relative, bool):
        raise _error("check.relative", "true (a fraction of the value: 0.01 is 1%) or false")
    if relative and tolerance >= 1:
        raise _error("check.tolerance", "a relative tolerance is a fraction below 1 (0.01 is 1%)")
    out["relative"] = relative
    return out


def _inner(inner: object) -> dict:
    from rubrics import checks

    if not isinstance(inner, dict):
        raise _error("check.check", f"give the text check to run: one of {', '.join(INNER_TYPES)}")
    if inner.get("type") not in INNER_TYPES:
        raise _error("check.check.type", f"must be one of {', '.join(INNER_TYPES)}")
    try:
        return checks.validate(inner)
    except checks.CheckError as exc:
        raise _error(
            exc.field.replace("check.", "check.check.", 1), str(exc).split(": ", 1)[-1]
        ) from None


# --- Evaluation -------------------------------------------------------------------------------


class Unreadable(Exception):
    """A file that could not be read or converted; its message says so, naming the file."""


def deliverables(episode) -> list:
    """The FileRefs of the response's assistant turns and tool outputs, in order. `episode` is
    read by duck typing (`files()`, `messages`), as rubrics.checks reads it."""
    if episode is None:
        return []
    return [ref for i, ref in episode.files() if episode.messages[i].role in DELIVERED_BY]


def _of_kind(ref, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == "image":
        return ref.kind in IMAGE_KINDS
    return ref.kind == kind


def _named(ref, glob: str) -> bool:
    return not glob or fnmatch.fnmatchcase(ref.name.lower(), glob.lower())


def kind_words(kind: str, plural: bool = False) -> str:
    """ "an XLSX file", "images", "files"."""
    if kind == "any":
        return "files" if plural else "a file"
    if kind == "image":
        return "images" if plural else "an image"
    upper = kind.upper()
    if plural:
        return f"{upper} files"
    return f"{'an' if upper[0] in 'AEFHILMNORSX' else 'a'} {upper} file"


def _named_words(glob: str) -> str:
    return f" named {glob}" if glob else ""


def _listing(refs: list) -> str:
    names = ", ".join(r.name for r in refs[:5])
    return names + (f" and {len(refs) - 5} more" if len(refs) > 5 else "")


def _missing(what: str, refs: list) -> tuple[bool, str]:
    if not refs:
        return False, f"No {what} in the response: it delivers no files."
    return False, f"No {what} in the response (its files: {_listing(refs)})."


def _converted(ref):
    from rubrics.files import store

    try:
        return store.converted(ref)
    except FileRefused as exc:
        raise Unreadable(f"{ref.name} could not be read: {exc}") from None
    except FileNotFoundError:
        raise Unreadable(
            f"{ref.name} is missing from storage (sha256 {ref.sha256[:12]})."
        ) from None
    except Exception as exc:  # noqa: BLE001 - a hostile file must not stop a grading run
        logger.warning("converting %s (%s) failed", ref.name, ref.sha256, exc_info=True)
        raise Unreadable(f"{ref.name} could not be read ({type(exc).__name__}).") from None


def evaluate(check: dict, episode) -> tuple[bool, str]:
    """(met, reason) of a validated file check on the episode's deliverables."""
    refs = deliverables(episode)
    kind = check["type"]
    try:
        if kind == "file_present":
            return _present(check, refs)
        if kind == "pdf_max_pages":
            return _pages(check, refs)
        if kind == "file_text":
            return _text(check, refs)
        return _cell_value(check, refs)
    except Unreadable as exc:
        return False, str(exc)


def _present(check: dict, refs: list) -> tuple[bool, str]:
    kind, glob, least = check["kind"], check.get("name", ""), check["min"]
    found = [r for r in refs if _of_kind(r, kind) and _named(r, glob)]
    if not found:
        return _missing(f"{kind_words(kind).split(' ', 1)[-1]}{_named_words(glob)}", refs)
    what = kind_words(kind, plural=True) if len(found) > 1 else kind_words(kind).split(" ", 1)[-1]
    count = f"{len(found)} {what}{_named_words(glob)}"
    if len(found) < least:
        return False, f"{count} ({_listing(found)}); at least {least} wanted."
    wanted = f"; at least {least} wanted." if least > 1 else "."
    return True, f"{count}: {_listing(found)}{wanted}"


def _first(refs: list, kinds: tuple[str, ...], glob: str):
    return next((r for r in refs if r.kind in kinds and _named(r, glob)), None)


def _pages(check: dict, refs: list) -> tuple[bool, str]:
    glob = check.get("name", "")
    ref = _first(refs, ("pdf",), glob)
    if ref is None:
        return _missing(f"PDF{_named_words(glob)}", refs)
    pages = _converted(ref).pages
    most, least = check["max"], check.get("min")
    noun = "page" if pages == 1 else "pages"
    if least:
        met = least <= pages <= most
        return met, f"{ref.name} has {pages} {noun}; {least} to {most} allowed."
    return pages <= most, f"{ref.name} has {pages} {noun}; at most {most} allowed."


def _text(check: dict, refs: list) -> tuple[bool, str]:
    from rubrics import checks

    kind, glob = check["kind"], check.get("name", "")
    kinds = tuple(k for k in TEXT_KINDS if k != "any") if kind == "any" else (kind,)
    ref = _first(refs, kinds, glob)
    if ref is None:
        what = "document" if kind == "any" else kind.upper() + " file"
        return _missing(f"{what}{_named_words(glob)}", refs)
    converted = _converted(ref)
    met, why = checks.evaluate_text(
        check["check"], converted.text, subject=f"the text of {ref.name}"
    )
    if converted.cut:
        why = f"{why[:-1]} (what the conversion read: it left out {converted.note})."
    return met, why


# --- Cells ------------------------------------------------------------------------------------


def number_words(value: float) -> str:
    """1250000.0 -> "1,250,000"; 0.125 -> "0.125"; as people write numbers."""
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    text = repr(value)
    if "e" in text or "inf" in text or "nan" in text:
        return text
    whole, _, fraction = text.partition(".")
    return f"{int(whole):,}.{fraction}" if whole not in ("-0", "0") else text


def expected_words(check: dict) -> str:
    """ "1,200,000 ± 1%", "1,200,000 ± 0.5", "1,200,000", "'Total'"."""
    if "equals" in check:
        return repr(check["equals"].strip())
    value, tolerance = number_words(check["value"]), check["tolerance"]
    if not tolerance:
        return value
    if check.get("relative"):
        return f"{value} ± {tolerance * 100:g}%"
    return f"{value} ± {number_words(tolerance)}"


def _close(found: float, check: dict) -> bool:
    allowed = check["tolerance"] * (abs(check["value"]) if check.get("relative") else 1)
    # A hair over the allowance is floating point (0.1 + 0.2), not a different number.
    return abs(found - check["value"]) <= allowed + 1e-12 * max(1.0, abs(check["value"]))


def _as_number(shown: str) -> float | None:
    try:
        number = float(shown.strip().replace(",", "") if THOUSANDS.match(shown.strip()) else shown)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _shown(shown: str | None) -> str:
    if shown is None:
        return "empty"
    number = _as_number(shown)
    return number_words(number) if number is not None else repr(shown[:80])


def _equal(shown: str | None, check: dict) -> bool:
    if shown is None:
        return False
    if "equals" in check:
        return shown.strip().casefold() == check["equals"].strip().casefold()
    number = _as_number(shown)
    return number is not None and _close(number, check)


def _sheet_of(converted, ref, wanted: str):
    sheets = converted.sheets
    if not sheets:
        raise Unreadable(f"{ref.name} has no sheets.")
    if ref.kind == "csv" or not wanted:
        return sheets[0]
    for test in (lambda s: s.name == wanted, lambda s: s.name.casefold() == wanted.casefold()):
        found = next((s for s in sheets if test(s)), None)
        if found is not None:
            return found
    names = ", ".join(repr(s.name) for s in sheets[:10])
    raise Unreadable(f"{ref.name} has no sheet {wanted!r} (its sheets: {names}).")


def _formulas(ref, sheet: str, addresses: list[str]) -> dict[str, str]:
    """The formulas at `addresses` that the conversion found no value for: the workbook read
    again without `data_only`, guarded as the conversion is. {} when it cannot be read."""
    if ref.kind != "xlsx" or not addresses:
        return {}
    import openpyxl

    from rubrics import uploads
    from rubrics.files import store

    wanted = set(addresses)
    columns = [parse_cell(a)[0] for a in addresses]
    rows = [parse_cell(a)[1] for a in addresses]
    found: dict[str, str] = {}
    try:
        data = store.read(ref.sha256)
        uploads.check_xlsx(data, name=ref.name)
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception:  # noqa: BLE001 - the conversion read it; failing here only loses detail
        return {}
    try:
        for r, row in enumerate(
            book[sheet].iter_rows(
                min_row=min(rows), max_row=max(rows), min_col=min(columns), max_col=max(columns)
            ),
            start=min(rows),
        ):
            for c, cell in enumerate(row, start=min(columns)):
                at = address(c, r)
                value = getattr(cell, "value", None)
                if at in wanted and isinstance(value, str) and value.startswith("="):
                    found[at] = value
    except Exception:  # noqa: BLE001
        return found
    finally:
        book.close()
    return found


def _cell_value(check: dict, refs: list) -> tuple[bool, str]:
    glob = check.get("name", "")
    ref = _first(refs, SHEET_KINDS, glob)
    if ref is None:
        return _missing(f"spreadsheet (XLSX or CSV){_named_words(glob)}", refs)
    converted = _converted(ref)
    sheet = _sheet_of(converted, ref, check.get("sheet", ""))
    where = f"{ref.name}, sheet {sheet.name!r}" if ref.kind == "xlsx" else ref.name
    values = {a: v for row in sheet.rows for a, v in row}
    wanted = cells_of(check["cell"])
    empty = [a for a in wanted if a not in values]
    formulas = _formulas(ref, sheet.name, empty)
    if formulas:
        at, formula = next(iter(formulas.items()))
        more = f" (and {len(formulas) - 1} more such cells)" if len(formulas) > 1 else ""
        return False, (
            f"{where}, {at} holds the formula {formula[:80]} with no computed value saved"
            f"{more}: the workbook was saved by a program that does not calculate. Assay reads "
            "the values Excel saved and never evaluates a formula; open and save the file in "
            "Excel or LibreOffice."
        )
    cut = f" (the conversion left out {converted.note})" if converted.cut and empty else ""
    expected = expected_words(check)
    aggregate = check.get("aggregate")
    if aggregate is None:
        shown = values.get(wanted[0])
        return _equal(
            shown, check
        ), f"{where}, {wanted[0]} = {_shown(shown)}, expected {expected}{cut}."
    if aggregate == "every":
        wrong = [a for a in wanted if not _equal(values.get(a), check)]
        if not wrong:
            return True, f"{where}, every cell of {check['cell']} = {expected}."
        first = wrong[0]
        others = ""
        if len(wrong) > 1:
            others = (
                "; 1 more cell differs" if len(wrong) == 2 else f"; {len(wrong) - 1} more differ"
            )
        return False, (
            f"{where}, {first} = {_shown(values.get(first))}, expected {expected} (every cell of "
            f"{check['cell']}){others}{cut}."
        )
    total = 0.0
    for a in wanted:
        shown = values.get(a)
        if shown is None:
            continue
        number = _as_number(shown)
        if number is None:
            return (
                False,
                f"{where}, {a} = {_shown(shown)}, not a number, in the sum of {check['cell']}.",
            )
        total += number
    met = _close(total, check)
    return (
        met,
        f"{where}, sum of {check['cell']} = {number_words(total)}, expected {expected}{cut}.",
    )
