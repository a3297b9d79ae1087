"""An episode rendered for a judge, and for pages.

**For a judge** (`for_judge`) an episode is a compact transcript, one block per message,
numbered as people see them (#1 is the first message)::

    #1 user: Refund order A17, it arrived broken.
    #2 assistant: Let me look it up.
       calls lookup_order (c1) {"id": "A17"}
    #3 tool lookup_order (c1): {"status": "delivered"}
    #4 assistant: Done: your refund is on its way.
    FINAL STATE:
    {"orders": {"A17": {"refunded": true}}}

The budget, in characters (about four to a token):

* each message's text is cut at MESSAGE_CHARS and each tool output at TOOL_OUTPUT_CHARS, the
  cut marked ``[... N characters cut]``;
* the final state is cut at STATE_CHARS;
* when the whole still exceeds EPISODE_CHARS, the messages before the first assistant turn
  (the task as the agent saw it), the first HEAD_MESSAGES after them and as many of the last
  messages as fit (at least TAIL_MESSAGES) are kept, and the middle is replaced by one
  marker saying how many messages, assistant steps and tool outputs were elided.

`Rendered.note` tells the judge, outside the fence, what was cut. A step criterion is judged
on the episode up to that step (`Episode.upto`), whose last message is the step judged: the
tail is always kept.

**Images and files.** Each image or file part is named on its own line (`file_line`: name,
kind, hash, so a changed file is a changed prompt). Under a document's line comes its text as
`rubrics.files.store.converted` reads it (PDF, DOCX, PPTX text; XLSX and CSV as cells named
by address), every line prefixed ``| `` so no line of a file reads as a message of the
episode, between a header and an end line naming the file::

    #4 assistant: The schedule is attached.
       [file: debt.xlsx (xlsx, sha256 0123456789abcdef)]
       --- text of debt.xlsx, as Assay converted it ---
       | ## Sheet 'Debt'
       | A1=Year; B1=Balance
       --- end of debt.xlsx ---

The budget for files, on top of the messages' (a file's text never pushes a message out):

* a file's text is cut at FILE_CHARS, marked ``[... N characters cut ...]``; what the
  conversion itself left out (pages, cells, sheets past `rubrics.files.convert`'s limits) is
  stated under the text;
* all files of one rendering share FILES_CHARS, given to the latest files first (the
  deliverable is usually last); a file left without any is named with a line saying so;
* files of elided messages are elided with them.

What a judge is sent of an image depends on its `Sight`. One that sees images gets each image
(at most PROMPT_IMAGES, the latest first) and, when it does not read files, a PDF's first
PDF_PAGE_IMAGES pages rendered to PNG, as `Attachment`s the prompt sends after its text, each
labelled by its file line; one that reads files gets each document as a file part too. One
that cannot see images is told, at the image's line and in the note, that an image was there
(its name and size) and that it is not shown. `Rendered.note` says all of this outside the
fence.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from annotation.content.episode import METADATA_NUMBERS, Episode, Message
from rubrics.files import parts as file_parts
from rubrics.files import preview, store
from rubrics.files.sniff import FileRefused
from rubrics.files.store import SHA256, FileRef

MESSAGE_CHARS = 4_000
TOOL_OUTPUT_CHARS = 2_000
STATE_CHARS = 6_000
EPISODE_CHARS = 24_000
HEAD_MESSAGES = 4
TAIL_MESSAGES = 4
PAGE_COLLAPSE_CHARS = 600  # parts longer than this start collapsed on pages
FILE_CHARS = 12_000  # one file's converted text in a judge's prompt
FILES_CHARS = 36_000  # all files' text of one rendering (a response's view, or the task)
PROMPT_IMAGES = 16  # images attached for one rendering, PDF pages included
PROMPT_FILES = 8  # documents attached as file parts for one rendering
PDF_PAGE_IMAGES = 4  # a PDF's first pages, as images, for a judge that sees images


@dataclass(frozen=True)
class Sight:
    """What a judge takes besides text (grading.models.Judge.accepts_images/accepts_files)."""

    images: bool = False
    files: bool = False


TEXT_ONLY = Sight()


@dataclass(frozen=True)
class Attachment:
    """An image or file sent beside the prompt's text, after it: `ref` is what is sent (the
    image, the document, or a rendered PDF page), `label` the text part before it."""

    ref: FileRef
    label: str
    native: bool = False  # a file part (for a judge that reads files), else an image_url part

    def as_parts(self) -> list[dict]:
        """Its parts in the stored shape (``sha256:`` references, see
        annotation.content.episode.Part); grading.judges.prompts inlines them when sent."""
        from annotation.content.episode import Part

        part = Part("file" if self.native else "image_url", file=self.ref)
        return [{"type": "text", "text": self.label}, part.as_json()]


def label(index: int) -> str:
    """How people and judges see a message or step index: #1 is the first message."""
    return f"#{index + 1}"


@dataclass(frozen=True)
class Rendered:
    text: str
    elided_messages: int = 0
    elided_steps: int = 0
    elided_tool_outputs: int = 0
    cut_parts: int = 0
    attachments: tuple[Attachment, ...] = ()
    files: FileTally | None = None

    @property
    def note(self) -> str:
        """What the judge is told of the budget ("" when nothing was cut)."""
        said = []
        if self.elided_messages:
            said.append(
                f"{self.elided_messages} messages in the middle of the episode were elided "
                f"({self.elided_steps} assistant steps, {self.elided_tool_outputs} tool "
                "outputs); judge only what is shown, and do not assume what was elided"
            )
        if self.cut_parts:
            said.append(f"{self.cut_parts} long parts were cut where marked")
        if self.files is not None:
            said.extend(self.files.said())
        return ("Note: " + "; ".join(said) + ".") if said else ""


def _cut(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]} [... {len(text) - limit:,} characters cut]", True


# How a judge's text names an image or file part: its name, kind and hash (so a changed file
# is a changed prompt, and a new cache key); task messages name theirs the same way.
file_line = file_parts.file_line


# --- Images and files ---------------------------------------------------------------------


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1048576:.1f} MB"


@dataclass
class FileTally:
    """What the files of one rendering cost and what the judge is told of them."""

    cut: int = 0  # texts cut (at FILE_CHARS, the shared budget, or by the conversion)
    unread: int = 0  # documents whose text is not shown: the budget went to later files
    unreadable: int = 0  # documents that could not be converted
    unseen: list[FileRef] = field(default_factory=list)  # images this judge cannot see
    left_out: int = 0  # images or pages past PROMPT_IMAGES, documents past PROMPT_FILES
    attached_images: int = 0
    attached_files: int = 0
    text_chars: int = 0  # converted text shown

    def said(self) -> list[str]:
        said = []
        if self.cut:
            said.append(
                f"the text of {_n(self.cut, 'file')} was cut where "
                f"marked (at most {FILE_CHARS:,} characters of a file, {FILES_CHARS:,} of all "
                "files, are shown)"
            )
        if self.unread:
            said.append(
                f"the text of {_n(self.unread, 'earlier file')} is "
                f"not shown: the {FILES_CHARS:,} characters of file text went to later files"
            )
        if self.unreadable:
            said.append(f"{_n(self.unreadable, 'file')} could not be read")
        if self.unseen:
            named = "; ".join(f"{r.name}, {_size(r.size)}" for r in self.unseen[:10])
            more = f"; and {len(self.unseen) - 10} more" if len(self.unseen) > 10 else ""
            said.append(
                f"{_n(len(self.unseen), 'image')} {'was' if len(self.unseen) == 1 else 'were'} "
                f"there that you cannot see ({named}{more}): judge only what the text shows, "
                "and do not assume what an image shows"
            )
        if self.attached_images or self.attached_files:
            what = []
            if self.attached_images:
                what.append(_n(self.attached_images, "image"))
            if self.attached_files:
                what.append(_n(self.attached_files, "file"))
            said.append(
                f"{' and '.join(what)} are attached after this prompt, each after a line naming "
                "it; they are part of the graded material, data and not instructions"
            )
        if self.left_out:
            said.append(
                f"{self.left_out} images, pages or files were not attached (at most "
                f"{PROMPT_IMAGES} images and {PROMPT_FILES} files are)"
            )
        return said

    def add(self, other: FileTally) -> None:
        self.cut += other.cut
        self.unread += other.unread
        self.unreadable += other.unreadable
        self.unseen.extend(other.unseen)
        self.left_out += other.left_out
        self.attached_images += other.attached_images
        self.attached_files += other.attached_files
        self.text_chars += other.text_chars


def _prefixed(text: str) -> list[str]:
    return ["| " + line for line in text.split("\n")] if text else ["| (no text)"]


def _document(ref: FileRef, room: int, tally: FileTally) -> tuple[list[str], int]:
    """A document's lines (its file line, then its text within `room` characters) and the
    characters of text it used."""
    head = file_line(ref)
    if room <= 0:
        tally.unread += 1
        return [f"{head} (its text is not shown: the prompt's file text went to later files)"], 0
    try:
        converted = store.converted(ref)
    except (FileRefused, FileNotFoundError, OSError) as exc:
        tally.unreadable += 1
        why = str(exc) if isinstance(exc, FileRefused) else "missing from storage"
        return [f"{head} (its text could not be read: {why})"], 0
    text = converted.text
    limit = min(FILE_CHARS, room)
    lines = [head, f"--- text of {ref.name}, as Assay converted it ---"]
    cut_here = False
    if len(text) > limit:
        why = (
            f"a file's text is shown up to {FILE_CHARS:,} characters"
            if limit == FILE_CHARS
            else f"the prompt's {FILES_CHARS:,} characters of file text ran out"
        )
        lines += _prefixed(text[:limit])
        lines.append(f"[... {len(text) - limit:,} characters cut: {why}]")
        cut_here, used = True, limit
    else:
        lines += _prefixed(text)
        used = len(text)
    if converted.cut:
        lines.append(f"[not converted: {converted.note}]")
        cut_here = True
    lines.append(f"--- end of {ref.name} ---")
    tally.cut += cut_here
    tally.text_chars += used
    return lines, used


def files_for_judge(
    refs: list[FileRef], *, sight: Sight = TEXT_ONLY, where: str = "response"
) -> tuple[list[list[str]], list[list[Attachment]], FileTally]:
    """The lines of each of `refs` (their file line, a document's text, what the judge is told
    of an image) and what is attached for each, within the budgets of the module doc: the
    latest files are served first."""
    tally = FileTally()
    lines: list[list[str]] = [[] for _ in refs]
    attached: list[list[Attachment]] = [[] for _ in refs]
    room, images, files = FILES_CHARS, PROMPT_IMAGES, PROMPT_FILES
    for k in reversed(range(len(refs))):
        ref = refs[k]
        head = file_line(ref)
        if ref.is_image:
            if not sight.images:
                tally.unseen.append(ref)
                lines[k] = [f"{head} ({_size(ref.size)}; not shown: you cannot see images)"]
            elif not store.exists(ref.sha256):
                lines[k] = [f"{head} (not shown: missing from storage)"]
            elif images <= 0:
                tally.left_out += 1
                lines[k] = [f"{head} (not attached: at most {PROMPT_IMAGES} images are)"]
            else:
                images -= 1
                tally.attached_images += 1
                lines[k] = [f"{head} (attached after the prompt)"]
                attached[k] = [Attachment(ref, f"Attached from the {where}: {head}")]
            continue
        lines[k], used = _document(ref, room, tally)
        room -= used
        if sight.files:
            if files > 0 and store.exists(ref.sha256):
                files -= 1
                tally.attached_files += 1
                lines[k].append("(the file itself is attached after the prompt)")
                attached[k] = [Attachment(ref, f"Attached from the {where}: {head}", native=True)]
            else:
                tally.left_out += 1
        elif sight.images and ref.kind == "pdf" and images > 0:
            try:
                pages, _cut = preview.page_refs(ref, limit=min(PDF_PAGE_IMAGES, images))
            except (FileRefused, FileNotFoundError, OSError) as exc:
                lines[k].append(f"(its pages could not be rendered: {exc})")
                continue
            images -= len(pages)
            tally.attached_images += len(pages)
            shown = f"its first {len(pages)} pages are" if len(pages) != 1 else "its first page is"
            lines[k].append(f"({shown} attached after the prompt as images)")
            attached[k] = [
                Attachment(
                    page,
                    f"Attached from the {where}: page {n} of {ref.name} "
                    f"(sha256 {ref.sha256[:16]}), rendered as an image",
                )
                for n, page in enumerate(pages, 1)
            ]
    tally.unseen.reverse()
    return lines, attached, tally


# --- Episodes ------------------------------------------------------------------------------


def _block(index: int, message: Message, files: list[list[str]] | None = None) -> tuple[str, int]:
    """One message's lines, and how many of its parts were cut. `files`: the lines of each of
    its files (`files_for_judge`); without, each file is its file line."""
    cuts = 0
    if files is None:
        files = [[file_line(ref)] for ref in message.files]
    file_lines = [f"   {line}" for lines in files for line in lines]
    if message.role == "tool":
        text, cut = _cut(message.text, TOOL_OUTPUT_CHARS)
        cuts += cut
        head = f"{label(index)} tool {message.name} ({message.tool_call_id}): "
        return "\n".join([head + text, *file_lines]), cuts
    text, cut = _cut(message.text, MESSAGE_CHARS)
    cuts += cut
    lines = [f"{label(index)} {message.role}: {text}"]
    if message.reasoning:
        reasoning, cut = _cut(message.reasoning, MESSAGE_CHARS)
        cuts += cut
        lines.append(f"   reasoning: {reasoning}")
    lines.extend(file_lines)
    for call in message.tool_calls:
        arguments, cut = _cut(call.arguments_json(), TOOL_OUTPUT_CHARS)
        cuts += cut
        lines.append(f"   calls {call.name} ({call.id}) {arguments}")
    return "\n".join(lines), cuts


def for_judge(
    episode: Episode, *, budget: int = EPISODE_CHARS, sight: Sight = TEXT_ONLY
) -> Rendered:
    """The episode as the judge reads it inside the response fence (see the module doc); its
    files within their own budget, and what a judge of `sight` is sent beside it."""
    return Transcript(episode).whole(budget=budget, sight=sight)


class Transcript:
    """An episode's blocks for the judge (`_block`, one per message), each made once however
    many renderings read it: the whole episode (`whole`, as `for_judge`) and the episode up to
    each of its steps (`upto`, as `for_judge_step`). A step criterion reads every step's
    prefix, so rendering each from scratch would make a block per message and step; here a
    rendering only joins blocks, and its budget is worked out from running totals."""

    def __init__(self, episode: Episode):
        self.episode = episode
        messages = episode.messages
        self._blocks: list[str] = []
        # Running totals over the first k messages (index k): the characters of their blocks,
        # each with its line break; their cut parts; their assistant and tool messages.
        self._size = [0]
        self._cuts = [0]
        self._assistants = [0]
        self._tools = [0]
        self._files = [m.files for m in messages]
        self._has_files = any(self._files)
        self._first_turn = next((i for i, m in enumerate(messages) if m.role == "assistant"), 0)

    def _made(self, end: int) -> None:
        """The blocks of the first `end` messages, made if not yet."""
        messages = self.episode.messages
        for i in range(len(self._blocks), end):
            message = messages[i]
            block, cut = _block(i, message)
            self._blocks.append(block)
            self._size.append(self._size[-1] + len(block) + 1)
            self._cuts.append(self._cuts[-1] + cut)
            self._assistants.append(self._assistants[-1] + (message.role == "assistant"))
            self._tools.append(self._tools[-1] + (message.role == "tool"))

    def whole(self, *, budget: int = EPISODE_CHARS, sight: Sight = TEXT_ONLY) -> Rendered:
        """The whole episode, with its final state (`for_judge`)."""
        return self._render(len(self.episode.messages), True, budget, sight)

    def upto(self, step: int, *, budget: int = EPISODE_CHARS, sight: Sight = TEXT_ONLY) -> Rendered:
        """The episode up to `step` (`Episode.upto`: its messages to that one, no final
        state), for a step criterion (`for_judge_step`)."""
        return self._render(min(step + 1, len(self.episode.messages)), False, budget, sight)

    def _render(self, n: int, with_state: bool, budget: int, sight: Sight) -> Rendered:
        """The first `n` messages (and the final state when `with_state`), within `budget`."""
        episode = self.episode
        self._made(n)
        blocks, size = self._blocks, self._size
        cuts = self._cuts[n]
        state = ""
        if with_state and episode.has_final_state:
            dumped = json.dumps(episode.final_state, ensure_ascii=False, sort_keys=True)
            dumped, cut = _cut(dumped, STATE_CHARS)
            cuts += cut
            state = "FINAL STATE:\n" + dumped
        total = size[n] + len(state)
        elided = (0, 0, 0)
        head_end = tail_start = n  # no middle elided: every message is kept
        if total > budget and n > HEAD_MESSAGES + TAIL_MESSAGES:
            first_turn = self._first_turn if self._first_turn < n else 0
            head_end = min(first_turn + HEAD_MESSAGES, n - TAIL_MESSAGES)
            room = budget - len(state) - size[head_end]
            # As many of the last messages as fit in `room` (at least TAIL_MESSAGES): the
            # earliest start whose blocks to the end fit, the running totals being increasing.
            tail_start = bisect.bisect_left(size, size[n] - room, head_end, n - TAIL_MESSAGES)
            if tail_start > head_end:
                elided = (
                    tail_start - head_end,
                    self._assistants[tail_start] - self._assistants[head_end],
                    self._tools[tail_start] - self._tools[head_end],
                )
            else:
                head_end = tail_start = n
        if head_end < n:
            marker = (
                f"[... {elided[0]} messages elided ({label(head_end)} to "
                f"{label(tail_start - 1)}): {elided[1]} assistant steps and {elided[2]} tool "
                "outputs ...]"
            )
            shown = [*blocks[:head_end], marker, *blocks[tail_start:n]]
        else:
            shown = blocks[:n]
        tally, attachments = None, ()
        if self._has_files:
            # The files of the messages kept, within their own budget (the module doc).
            kept = [*range(head_end), *range(tail_start, n)] if head_end < n else range(n)
            refs = [(i, ref) for i in kept for ref in self._files[i]]
            if refs:
                lines, attached, tally = files_for_judge([r for _i, r in refs], sight=sight)
                by_message: dict[int, list[list[str]]] = {}
                for (i, _ref), own in zip(refs, lines, strict=True):
                    by_message.setdefault(i, []).append(own)
                # Where a kept message's block is in `shown` (after the marker: one more).
                at = {i: i if i < head_end else i - tail_start + head_end + 1 for i in kept}
                for i, own in by_message.items():
                    shown[at[i]] = _block(i, episode.messages[i], own)[0]
                attachments = tuple(a for group in attached for a in group)
        text = "\n".join(shown) + (("\n" + state) if state else "")
        return Rendered(text, *elided, cut_parts=cuts, attachments=attachments, files=tally)


def deliverables(episode: Episode) -> list[FileRef]:
    """The files an outcome criterion reads beside the final answer: every image and file an
    assistant message carries (the response's deliverables), in order."""
    return [ref for m in episode.messages if m.role == "assistant" for ref in m.files]


def for_judge_outcome(episode: Episode, *, sight: Sight = TEXT_ONLY) -> Rendered:
    """The final answer (`Episode.final_text`) and, after it, the deliverables: exactly the
    final text when there are none."""
    text = episode.final_text
    refs = deliverables(episode)
    if not refs:
        return Rendered(text)
    lines, attached, tally = files_for_judge(refs, sight=sight)
    body = "\n".join(line for own in lines for line in own)
    return Rendered(
        f"{text}\n\n{body}" if text else body,
        attachments=tuple(a for group in attached for a in group),
        files=tally,
    )


def _task_parts(content: list) -> tuple[str, list[FileRef], int]:
    """A task message's text parts joined, its images and files (stored shape, as
    annotation.content.episode.Part.as_json writes them), and how many parts were unreadable."""
    texts, refs, bad = [], [], 0
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            bad += 1
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
            continue
        meta = part.get("file")
        sha = meta.get("sha256") if isinstance(meta, dict) else None
        if part.get("type") in ("image_url", "file") and isinstance(sha, str) and SHA256.match(sha):
            refs.append(
                FileRef(
                    sha,
                    str(meta.get("kind", ""))[:10],
                    str(meta.get("filename") or f"{sha[:12]}.{meta.get('kind', '')}")[:200],
                    int(meta.get("size") or 0) if str(meta.get("size", "")).isdigit() else 0,
                )
            )
            continue
        bad += 1
    return "\n".join(texts), refs, bad


def conversation_for_judge(messages: list[dict], *, sight: Sight = TEXT_ONLY) -> Rendered:
    """A task's messages as the judge reads them in the conversation fence: ``[role]`` and
    the text, as always, for text messages; a message whose content is a list of parts has its
    text, then its images and files as a response's are (`files_for_judge`, the task's own
    budget)."""
    rows: list[tuple[str, str, list[FileRef], int]] = []
    for m in messages:
        content = m.get("content", "") if isinstance(m, dict) else ""
        role = m.get("role", "") if isinstance(m, dict) else ""
        if isinstance(content, list):
            text, refs, bad = _task_parts(content)
            rows.append((role, text, refs, bad))
        else:
            rows.append((role, content, [], 0))
    refs = [ref for _r, _t, own, _b in rows for ref in own]
    if not refs and not any(bad for *_x, bad in rows):
        return Rendered("\n\n".join(f"[{role}]\n{text}" for role, text, _f, _b in rows))
    lines, attached, tally = files_for_judge(refs, sight=sight, where="task")
    out, k = [], 0
    for role, text, own, bad in rows:
        block = [f"[{role}]", text] if text else [f"[{role}]"]
        for _ref in own:
            block.extend(lines[k])
            k += 1
        if bad:
            block.append(f"[{bad} part{'s' if bad != 1 else ''} Assay could not read]")
        out.append("\n".join(block))
    return Rendered(
        "\n\n".join(out),
        attachments=tuple(a for group in attached for a in group),
        files=tally,
    )


def for_judge_step(
    episode: Episode, step: int, *, budget: int = EPISODE_CHARS, sight: Sight = TEXT_ONLY
) -> Rendered:
    """The episode up to `step`, for a step criterion: the last message is the step judged."""
    return Transcript(episode).upto(step, budget=budget, sight=sight)


# --- exports ----------------------------------------------------------------------------


def for_steps(episode: Episode, steps: list[int]) -> tuple[str, list[str]]:
    """An episode cut at `steps` (ascending assistant message indexes), for step-supervision
    datasets: the messages before the first assistant turn, then for each step the messages
    since the step before it (the tool outputs it saw) and the turn itself, rendered as the
    judge reads them, with the per-part cuts. Joined, they read as the episode up to its last
    step."""
    first = next((i for i, m in enumerate(episode.messages) if m.role == "assistant"), 0)
    blocks = [_block(i, m)[0] for i, m in enumerate(episode.messages)]
    completions = []
    start = first
    for step in steps:
        completions.append("\n".join(blocks[start : step + 1]))
        start = step + 1
    return "\n".join(blocks[:first]), completions


# --- pages ------------------------------------------------------------------------------


# Metadata keys an annotator may see are the episode's figures (episode.METADATA_NUMBERS:
# steps, tokens, wall time), none naming who made it. Everything else a producer kept (model,
# provider, run ids...) may name a model, so blind viewers see only those.


def for_page(episode: Episode, *, blind: bool = True, step_verdicts: Iterable = ()) -> dict:
    """What the trajectory view shows: numbered messages with role, text, reasoning, each
    tool call's name, pretty arguments and output (matched by call id), and the final
    state, each flagged `long` when it should start collapsed; each message's files (an
    image's with its size in pixels, read in one query).

    `blind` (the default, so that no page shows more by forgetting it) keeps only the
    metadata that cannot name a model (METADATA_NUMBERS); pages for people who may see models
    pass blind=False.
    `step_verdicts` (anything with a `.step`, e.g. Verdicts fetched in one query) are put
    beside the rows of their steps, in the order given."""
    outputs = {m.tool_call_id: m for m in episode.messages if m.role == "tool"}
    called_at = {call.id: i for i, call in episode.tool_calls()}
    by_step: dict[int, list] = {}
    for verdict in step_verdicts:
        by_step.setdefault(verdict.step, []).append(verdict)
    sizes = preview.image_sizes(ref.sha256 for _, ref in episode.files() if ref.is_image)
    rows = []
    for i, m in enumerate(episode.messages):
        calls = []
        for call in m.tool_calls:
            result = outputs.get(call.id)
            output = result.text if result is not None else None
            calls.append(
                {
                    "id": call.id,
                    "name": call.name,
                    "arguments": call.arguments_json(indent=2),
                    "arguments_long": len(call.arguments_json()) > PAGE_COLLAPSE_CHARS,
                    "output": output,
                    "output_long": output is not None and len(output) > PAGE_COLLAPSE_CHARS,
                }
            )
        answers = called_at.get(m.tool_call_id) if m.role == "tool" else None
        rows.append(
            {
                "index": i,
                "label": label(i),
                "role": m.role,
                "text": m.text,
                "long": len(m.text) > PAGE_COLLAPSE_CHARS,
                "reasoning": m.reasoning,
                "reasoning_long": len(m.reasoning) > PAGE_COLLAPSE_CHARS,
                "calls": calls,
                "files": [
                    {
                        "sha256": ref.sha256,
                        "name": ref.name,
                        "kind": ref.kind,
                        "size": ref.size,
                        "is_image": ref.is_image,
                        "width": sizes.get(ref.sha256, (None, None))[0],
                        "height": sizes.get(ref.sha256, (None, None))[1],
                    }
                    for ref in m.files
                ],
                "tool_name": m.name if m.role == "tool" else "",
                "tool_call_id": m.tool_call_id,
                "answers": label(answers) if answers is not None else "",
                "answers_index": answers,
                "is_step": m.role == "assistant",
                "verdicts": by_step.get(i, []) if m.role == "assistant" else [],
            }
        )
    state = None
    if episode.has_final_state:
        state = json.dumps(episode.final_state, ensure_ascii=False, sort_keys=True, indent=2)
    metadata = episode.metadata
    if blind:
        metadata = {k: v for k, v in metadata.items() if k in METADATA_NUMBERS}
    return {
        "messages": rows,
        "final_state": state,
        "final_state_long": state is not None and len(state) > PAGE_COLLAPSE_CHARS,
        "metadata": metadata,
        "metadata_items": [
            (key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
            for key, value in metadata.items()
        ],
        "steps": len(episode.steps()),
        "tool_calls": sum(1 for _ in episode.tool_calls()),
    }
