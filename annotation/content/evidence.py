"""Evidence quoted from an episode: a quote anchored to one message (a step, for a step
criterion) must occur in what the trajectory view shows for that message.

A message shows its text, its reasoning, each tool call's arguments and, for an assistant
turn, the outputs of its calls (shown beside them). People select text on the page, which
joins lines and spaces differently from the stored text, so whitespace is compared loosely:
any run of spaces and line breaks matches any other.

Evidence may also point into a file a message carries (`parse_anchor`, `check_anchor`): a
PDF's page (and a region of it), a sheet's cell, a region of an image. The quote, if any, is
then what the file shows there.
"""

from __future__ import annotations

import json
import re

from annotation.content.episode import Episode
from rubrics.files.store import SHA256


def _squeezed(text: str) -> str:
    return " ".join(text.split())


def message_texts(episode: Episode, index: int) -> list[str]:
    """What the trajectory view shows for message `index` (an IndexError when there is none)."""
    if not 0 <= index < len(episode.messages):
        raise IndexError(index)
    message = episode.messages[index]
    texts = [message.text, message.reasoning]
    for call in message.tool_calls:
        texts.append(call.arguments_json(indent=2))
        result = episode.tool_result(call.id)
        if result is not None:
            texts.append(result.text)
    return [t for t in texts if t]


def quoted_from(episode: Episode, index: int, quote: str) -> bool:
    """Whether `quote` occurs in message `index` of the episode."""
    try:
        texts = message_texts(episode, index)
    except IndexError:
        return False
    wanted = _squeezed(quote)
    return bool(wanted) and any(wanted in _squeezed(t) for t in texts)


# --- Evidence in a file: a page, a region of it, or a sheet's cell ---------------------------

ANCHOR_KEYS = {"file", "page", "region", "sheet", "cell"}
CELL = re.compile(r"^([A-Z]{1,3})([1-9][0-9]{0,6})$")
MAX_COLUMN = 16_384  # XFD, as far as Excel goes


class AnchorError(ValueError):
    """An evidence anchor that does not point at something the episode shows; the message
    says what and where."""


def parse_anchor(raw) -> dict | None:
    """An anchor as sent (a JSON object, or its text): {"file": sha256, "page": n} with an
    optional "region": [x, y, width, height] (fractions of the page or image, 0 to 1), or
    {"file": sha256, "sheet": name, "cell": "B7"}, or {"file": sha256} with a region (an
    image). None for nothing sent."""
    if raw is None or raw == "" or raw == {}:
        return None
    if isinstance(raw, str):
        if len(raw) > 2_000:
            raise AnchorError("The anchor is too long.")
        try:
            raw = json.loads(raw)
        except ValueError:
            raise AnchorError("The anchor is not a JSON object.") from None
    if not isinstance(raw, dict):
        raise AnchorError("The anchor is not a JSON object.")
    unknown = set(raw) - ANCHOR_KEYS
    if unknown:
        raise AnchorError(f"Unknown anchor keys: {', '.join(sorted(map(str, unknown)))}.")
    sha = raw.get("file")
    if not isinstance(sha, str) or not SHA256.match(sha):
        raise AnchorError("Name the file by its sha256 (64 hex characters).")
    anchor: dict = {"file": sha}
    if "cell" in raw or "sheet" in raw:
        if "page" in raw or "region" in raw:
            raise AnchorError("Point at a sheet's cell, or at a page; not both.")
        sheet, cell = raw.get("sheet"), raw.get("cell")
        if not isinstance(sheet, str) or not sheet or len(sheet) > 200:
            raise AnchorError("Name the sheet the cell is on.")
        match = CELL.match(cell) if isinstance(cell, str) else None
        if not match or _column(match[1]) > MAX_COLUMN or int(match[2]) > 1_048_576:
            raise AnchorError("Name the cell by its address, as B7.")
        anchor.update(sheet=sheet, cell=cell)
        return anchor
    if "page" in raw:
        page = raw["page"]
        if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= 1_000_000:
            raise AnchorError("A page is a whole number from 1.")
        anchor["page"] = page
    if "region" in raw:
        region = raw["region"]
        if (
            not isinstance(region, list)
            or len(region) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in region)
            or not all(0 <= v <= 1 for v in region)
            or region[0] + region[2] > 1.000001
            or region[1] + region[3] > 1.000001
            or region[2] <= 0
            or region[3] <= 0
        ):
            raise AnchorError(
                "A region is [x, y, width, height], fractions of the page from 0 to 1."
            )
        anchor["region"] = [round(float(v), 4) for v in region]
    if "page" not in anchor and "region" not in anchor:
        raise AnchorError("Point at a page, a region or a sheet's cell of the file.")
    return anchor


def _column(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def step_messages(episode: Episode, step: int) -> list[int]:
    """The messages a step's evidence may come from: the step, and the tool results of its
    calls (shown beside them)."""
    if not 0 <= step < len(episode.messages):
        return []
    calls = {c.id for c in episode.messages[step].tool_calls}
    return [step] + [
        i for i, m in enumerate(episode.messages) if m.role == "tool" and m.tool_call_id in calls
    ]


def file_messages(episode: Episode, sha256: str) -> list[int]:
    """The indexes of the messages that carry the file."""
    return [i for i, ref in episode.files() if ref.sha256 == sha256]


def check_anchor(episode: Episode, anchor: dict, quote: str, *, near: list[int]) -> int:
    """Check that `anchor` points at a file of one of the messages `near` (the step's, for a
    step verdict; any message otherwise) and at something in it, and that `quote` (when
    given) is what it shows there; return the index of the message carrying the file."""
    from rubrics.files import store

    carried = [i for i in file_messages(episode, anchor["file"]) if i in near]
    if not carried:
        raise AnchorError("The anchor names a file this episode does not carry there.")
    ref = next(r for i, r in episode.files() if r.sha256 == anchor["file"])
    wanted = _squeezed(quote)
    if "cell" in anchor:
        if ref.kind not in ("xlsx", "csv"):
            raise AnchorError(f"'{ref.name}' is a {ref.kind} file; it has no cells.")
        sheets = {s.name: s for s in store.converted(ref).sheets}
        sheet = sheets.get(anchor["sheet"])
        if sheet is None:
            raise AnchorError(f"'{ref.name}' has no sheet '{anchor['sheet']}'.")
        value = next((v for row in sheet.rows for a, v in row if a == anchor["cell"]), "")
        if wanted and wanted not in _squeezed(value):
            raise AnchorError(f"The quote is not what cell {anchor['cell']} holds.")
        return carried[0]
    if "page" in anchor:
        if ref.kind != "pdf":
            raise AnchorError(f"'{ref.name}' is a {ref.kind} file; it has no pages.")
        from rubrics.files import preview

        pages = store.converted(ref).pages
        if anchor["page"] > pages:
            raise AnchorError(
                f"'{ref.name}' has {pages} page(s); there is no page {anchor['page']}."
            )
        shown = len(preview.pdf_pages(ref).sizes)  # only a rendered page can be pointed at
        if anchor["page"] > shown:
            raise AnchorError(
                f"'{ref.name}' shows {shown} rendered page(s) of {pages}; there is no page "
                f"{anchor['page']} to point at."
            )
        if wanted and wanted not in _squeezed(store.converted(ref).text):
            raise AnchorError(f"The quote is not in the text of '{ref.name}'.")
        return carried[0]
    if not ref.is_image:
        raise AnchorError(f"A region of '{ref.name}' needs its page.")
    if wanted:
        raise AnchorError("An image holds no text to quote; point at its region.")
    return carried[0]


def file_names(episode: Episode) -> dict[str, str]:
    """Each file's name by its sha256, for `anchor_label`."""
    return {ref.sha256: ref.name for _, ref in episode.files()}


def _percent(v: float) -> str:
    return f"{v * 100:.0f}%"


def anchor_label(anchor: dict | None, names: dict[str, str]) -> str:
    """An anchor in words, as the pages show it: "debt.xlsx › Debt schedule › D3",
    "book.pdf › page 2 › region 10%–60% across, 20%–45% down", "chart.png › region ...".
    A file the names do not know is named by the start of its hash."""
    if not anchor or not anchor.get("file"):
        return ""
    sha = str(anchor["file"])
    said = [names.get(sha) or f"file {sha[:12]}"]
    if "sheet" in anchor:
        said += [str(anchor["sheet"]), str(anchor.get("cell", ""))]
    if "page" in anchor:
        said.append(f"page {anchor['page']}")
    region = anchor.get("region")
    if region and len(region) == 4:
        x, y, w, h = region
        said.append(
            f"region {_percent(x)}–{_percent(x + w)} across, {_percent(y)}–{_percent(y + h)} down"
        )
    return " › ".join(said)
