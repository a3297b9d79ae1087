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
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from annotation.content.episode import METADATA_NUMBERS, Episode, Message
from rubrics.files import preview

MESSAGE_CHARS = 4_000
TOOL_OUTPUT_CHARS = 2_000
STATE_CHARS = 6_000
EPISODE_CHARS = 24_000
HEAD_MESSAGES = 4
TAIL_MESSAGES = 4
PAGE_COLLAPSE_CHARS = 600  # parts longer than this start collapsed on pages


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
        return ("Note: " + "; ".join(said) + ".") if said else ""


def _cut(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]} [... {len(text) - limit:,} characters cut]", True


def file_line(ref) -> str:
    """How a judge's text names an image or file part: its name, kind and hash (so a changed
    file is a changed prompt, and a new cache key)."""
    what = "image" if ref.is_image else "file"
    return f"[{what}: {ref.name} ({ref.kind}, sha256 {ref.sha256[:16]})]"


def _block(index: int, message: Message) -> tuple[str, int]:
    """One message's lines, and how many of its parts were cut."""
    cuts = 0
    if message.role == "tool":
        text, cut = _cut(message.text, TOOL_OUTPUT_CHARS)
        cuts += cut
        head = f"{label(index)} tool {message.name} ({message.tool_call_id}): "
        files = "".join(f"\n   {file_line(ref)}" for ref in message.files)
        return head + text + files, cuts
    text, cut = _cut(message.text, MESSAGE_CHARS)
    cuts += cut
    lines = [f"{label(index)} {message.role}: {text}"]
    if message.reasoning:
        reasoning, cut = _cut(message.reasoning, MESSAGE_CHARS)
        cuts += cut
        lines.append(f"   reasoning: {reasoning}")
    lines.extend(f"   {file_line(ref)}" for ref in message.files)
    for call in message.tool_calls:
        arguments, cut = _cut(call.arguments_json(), TOOL_OUTPUT_CHARS)
        cuts += cut
        lines.append(f"   calls {call.name} ({call.id}) {arguments}")
    return "\n".join(lines), cuts


def for_judge(episode: Episode, *, budget: int = EPISODE_CHARS) -> Rendered:
    """The episode as the judge reads it inside the response fence (see the module doc)."""
    blocks = []
    cuts = 0
    for i, message in enumerate(episode.messages):
        block, cut = _block(i, message)
        blocks.append(block)
        cuts += cut
    state = ""
    if episode.has_final_state:
        dumped = json.dumps(episode.final_state, ensure_ascii=False, sort_keys=True)
        dumped, cut = _cut(dumped, STATE_CHARS)
        cuts += cut
        state = "FINAL STATE:\n" + dumped
    total = sum(len(b) + 1 for b in blocks) + len(state)
    elided = (0, 0, 0)
    if total > budget and len(blocks) > HEAD_MESSAGES + TAIL_MESSAGES:
        first_turn = next((i for i, m in enumerate(episode.messages) if m.role == "assistant"), 0)
        head_end = min(first_turn + HEAD_MESSAGES, len(blocks) - TAIL_MESSAGES)
        room = budget - len(state) - sum(len(b) + 1 for b in blocks[:head_end])
        tail_start = len(blocks) - TAIL_MESSAGES
        used = sum(len(b) + 1 for b in blocks[tail_start:])
        while tail_start > head_end and used + len(blocks[tail_start - 1]) + 1 <= room:
            tail_start -= 1
            used += len(blocks[tail_start]) + 1
        if tail_start > head_end:
            middle = episode.messages[head_end:tail_start]
            elided = (
                len(middle),
                sum(1 for m in middle if m.role == "assistant"),
                sum(1 for m in middle if m.role == "tool"),
            )
            marker = (
                f"[... {elided[0]} messages elided ({label(head_end)} to "
                f"{label(tail_start - 1)}): {elided[1]} assistant steps and {elided[2]} tool "
                "outputs ...]"
            )
            blocks = [*blocks[:head_end], marker, *blocks[tail_start:]]
    text = "\n".join(blocks) + (("\n" + state) if state else "")
    return Rendered(text, *elided, cut_parts=cuts)


def for_judge_step(episode: Episode, step: int, *, budget: int = EPISODE_CHARS) -> Rendered:
    """The episode up to `step`, for a step criterion: the last message is the step judged."""
    return for_judge(episode.upto(step), budget=budget)


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
