"""Render a grader's prompt templates for one response and criterion.

Graded text is fenced between lines that carry a nonce, and the prompt says the text is data.
The nonce is a keyed hash (HMAC with the deployment's secret) of the fenced text itself:

* unpredictable: without the key nobody can compute the nonce of any text, so a response
  cannot write its own closing fence, nor the fences of the conversation, the reference or
  the criterion (whose texts are known to whoever wrote the task);
* per response: every graded text gets its own nonce;
* and still stable: the same inputs always give the same prompt, which keeps verdicts
  reproducible from the grader hash, provider prompt caches warm, and the "try it" preview
  identical to what the judge is sent. (A fresh random nonce per call would break all three
  and buy nothing the key does not already give.)

Should a text nevertheless contain its nonce, the next one in a deterministic sequence is
used, so a fence line never occurs inside the text it fences.

**Images and files.** The texts in the fences are rendered by annotation.content.render: a
file's converted text sits under its file line inside the fence it belongs to (response or
conversation). What a judge that sees images (or reads files) is sent of them comes after
the prompt's text, as parts of the user message: for each, a text part naming it (its file
line, so its hash) and then the image or file. Prompts hold those parts in the stored shape
(``sha256:`` references, cheap to build, show and estimate); `wire` inlines them as data:
URIs when the request is built.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json

from django.conf import settings

from annotation.content import render
from rubrics.files import parts as file_parts

FENCE_SALT = b"assay.grading.judges.prompts.fence"


@functools.lru_cache(maxsize=8)
def _key_of(secret: str) -> bytes:
    return hashlib.sha256(FENCE_SALT + secret.encode()).digest()


def _fence_key() -> bytes:
    return _key_of(settings.SECRET_KEY)


# The texts of one response are fenced, hashed and keyed again for each of its criteria (a
# 30-step episode's step views are tens of kilobytes each): the last few texts' nonces and
# hashes are kept. A text passed again is most often the very same string, found at once.
TEXTS_KEPT = 64


def nonce(text: str) -> str:
    """The fence nonce of `text`: 24 hex digits that `text` does not contain."""
    return _nonce(_fence_key(), text)


@functools.lru_cache(maxsize=TEXTS_KEPT)
def _nonce(key: bytes, text: str) -> str:
    for attempt in range(1000):
        digest = hmac.new(key, f"{attempt}\n{text}".encode(), hashlib.sha256).hexdigest()[:24]
        if digest not in text:
            return digest
    raise ValueError("no fence nonce found that the text does not contain")  # unreachable


@functools.lru_cache(maxsize=TEXTS_KEPT)
def digest(text: str) -> str:
    """The SHA-256 of `text` (UTF-8), in hex: what cache keys cover of a text."""
    return hashlib.sha256(text.encode()).hexdigest()


def content_hash(text: str) -> str:
    """A plain content address (no key): for cache keys, which must survive a key change."""
    return digest(text)[:16]


def conversation_text(messages: list[dict], sight: render.Sight = render.TEXT_ONLY) -> str:
    """The task's messages in the conversation fence (render.conversation_for_judge: text
    messages as ``[role]`` and their text, as always; images and files as a response's)."""
    return render.conversation_for_judge(messages, sight=sight).text


# --- Images and files beside the text ---------------------------------------------------

# What the prompt says, after the criteria, of an outcome view's files and of the task's: a
# trajectory or step view says it in its own section (about_section's note).
FILES_ABOUT = """
# Images and files
{note}
"""


def files_section(note: str) -> str:
    return FILES_ABOUT.format(note=note) if note else ""


def user_content(text: str, attachments=()) -> str | list[dict]:
    """The user message's content: the text alone, or the text and then, for each attachment
    (render.Attachment), a text part naming it and the image or file (stored shape)."""
    if not attachments:
        return text
    parts: list[dict] = [{"type": "text", "text": text}]
    for attachment in attachments:
        parts.extend(attachment.as_parts())
    return parts


# What the tokens-per-minute bucket and the estimate count for an image or a file part sent
# beside the text (providers bill an image by its tiles; 800 is a 1024 x 1024 image at high
# detail on OpenAI's scale, a fair bound for Assay's re-encoded images of at most 2048 px).
IMAGE_TOKENS = 800
FILE_PART_TOKENS = 2_000


def prompt_size(messages: list[dict]) -> tuple[int, int, int]:
    """(text characters, image parts, file parts) of a prompt, stored shape or wire shape."""
    chars = images = files = 0
    for message in messages:
        content = message.get("content", "")
        if not isinstance(content, list):
            chars += len(str(content))
            continue
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image_url":
                images += 1
            elif kind == "file":
                files += 1
            elif kind == "text":
                chars += len(str(part.get("text", "")))
    return chars, images, files


def prompt_tokens(messages: list[dict]) -> int:
    """A prompt's rough size in tokens: four characters a token, and images and files at
    IMAGE_TOKENS and FILE_PART_TOKENS."""
    chars, images, files = prompt_size(messages)
    return chars // 4 + images * IMAGE_TOKENS + files * FILE_PART_TOKENS


def wire(messages: list[dict]) -> list[dict]:
    """The prompt as sent: image and file parts in the stored shape become OpenAI's
    (``image_url.url`` and ``file.file_data`` data: URIs of the stored bytes)."""
    out = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            out.append(message)
            continue
        out.append({**message, "content": [file_parts.inline(part) for part in content]})
    return out


# --- What the response fence holds, said outside it (episodes) ---------------------------

# A trajectory or step criterion sees an agent's episode rendered in the response fence
# (annotation.content.render); these sections, outside the fences after the criteria, tell
# the judge what it is reading and what the budget cut. An outcome criterion gets none: its
# prompt is exactly as before episodes.
TRAJECTORY_ABOUT = """
# What the response is
The response to grade is an agent's whole episode: its messages numbered #1, #2, ..., each \
tool call with its arguments and the tool's output, and the final state of its environment \
when one was kept. Judge the episode as a whole: what the agent did, the tools it called and \
what it answered.{note}
"""

# The simulator finds step prompts by this phrase (grading.judges.simulator.STEP_MARK).
STEP_MARK = "judge only the last assistant turn shown"
STEP_ABOUT = (
    """
# Which step to grade
The response to grade is an agent's episode up to one of its steps: {step}, the last \
message shown. Of the episode, """
    + STEP_MARK
    + """ ({step}: its text, its reasoning and \
its tool calls with their arguments); the messages before it are its context, not graded.{note}
"""
)


def about_section(scope: str, *, note: str = "", step: int | None = None) -> str:
    """What the prompt says of a trajectory or step criterion's fenced episode ("" for an
    outcome criterion). `note` is the renderer's note of what the budget cut; `step` the
    message index of the step judged."""
    note = f"\n{note}" if note else ""
    if scope == "trajectory":
        return TRAJECTORY_ABOUT.format(note=note)
    if scope == "step":
        return STEP_ABOUT.format(step=f"#{(step or 0) + 1}", note=note)
    return ""


def render_points(points: float) -> str:
    return f"{points:g}"


def criterion_text(criterion: dict) -> str:
    """What the judge reads for a criterion: a scale criterion lists its level descriptors."""
    if criterion.get("kind") != "scale":
        return criterion["text"]
    levels = criterion["scale"]["descriptors"]
    lines = [f"{i}: {text}" for i, text in enumerate(levels, start=1)]
    return (
        f"{criterion['text']}\nRate the response from 1 to {len(levels)}, and reply with "
        '{"score": <level>, "explanation": "..."}:\n' + "\n".join(lines)
    )


def guidance_items(spec: dict, criterion: dict) -> list[tuple[str, str]]:
    """(label, text) of a criterion's guidance and examples, for graders whose spec carries
    the guidance templates (graders compiled before them render as they always did)."""
    labels = spec["judge"].get("guidance_labels")
    if not labels:
        return []
    examples = criterion.get("examples") or {}
    items = [
        (labels["guidance"], criterion.get("guidance") or ""),
        (labels["met"], examples.get("met") or ""),
        (labels["not_met"], examples.get("not_met") or ""),
    ]
    return [(label, text) for label, text in items if text.strip()]


def guidance_section(spec: dict, criterion: dict) -> str:
    """The per-criterion prompt's fenced guidance block, or "" when there is none."""
    template = spec["judge"].get("guidance_template")
    items = guidance_items(spec, criterion)
    if not template or not items:
        return ""
    text = "\n".join(f"{label}: {body}" for label, body in items)
    return template.format(guidance=text, guidance_nonce=nonce(text))


def batch_guidance_section(spec: dict, criteria: list[dict]) -> str:
    """The batched prompt's guidance block: one line per item, named by criterion id."""
    template = spec["judge"].get("batch_guidance_template")
    if not template:
        return ""
    lines = [
        f"[{c['id']}] {label}: {' '.join(body.split())}"
        for c in criteria
        for label, body in guidance_items(spec, c)
    ]
    if not lines:
        return ""
    text = "\n".join(lines)
    return template.format(guidance=text, guidance_nonce=nonce(text))


def output_schema(spec: dict, criterion: dict) -> dict:
    judge = spec["judge"]
    if criterion.get("kind") == "scale":
        return judge["scale_output_schema"]
    return judge["output_schema"]


def judge_messages(
    spec: dict,
    *,
    messages: list[dict],
    response: str,
    criterion: dict,
    about: str = "",
    conversation: render.Rendered | None = None,
    attachments=(),
):
    """The per-criterion prompt. Everything that every criterion of a response shares comes
    first (instructions and schema, conversation, response, reference), so a provider's
    prompt cache reuses it; the criterion and its guidance come last. `about`
    (`about_section`) says what an episode in the response fence is, after the criterion.
    `conversation`: the task's messages as rendered for this judge (default: for a judge of
    text only); its attachments, then the response's `attachments`, follow the text."""
    judge = spec["judge"]
    if conversation is None:
        conversation = render.conversation_for_judge(messages)
    attached = (*conversation.attachments, *attachments)
    conversation = conversation.text
    system = judge["system_template"].format(
        schema=json.dumps(output_schema(spec, criterion), sort_keys=True)
    )
    text = criterion_text(criterion)
    reference = spec.get("reference") or ""
    reference_section = (
        judge["reference_template"].format(reference=reference, reference_nonce=nonce(reference))
        if reference and judge.get("reference_template")
        else ""
    )
    user = judge["user_template"].format(
        reference=reference_section,
        conversation=conversation,
        conversation_nonce=nonce(conversation),
        response=response,
        response_nonce=nonce(response),
        criterion=text,
        points=render_points(criterion["points"]),
        criterion_nonce=nonce(text),
        guidance=about + guidance_section(spec, criterion),
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user_content(user, attached)},
    ]


# --- Batched: one call grades every judged criterion of a response ------------------------

# The batched templates are compiled into each grader (rubrics.compiler), so its hash covers
# them; these defaults serve graders compiled before they were.
from rubrics.compiler import (  # noqa: E402
    BATCH_LEVEL_SCHEMA,
    BATCH_SCALE_LINE,
    BATCH_SCHEMA,
    BATCH_SYSTEM,
    BATCH_USER,
)


def batchable(criterion: dict) -> bool:
    """Judged criteria go in a batch: binary ones answer met or not in "verdicts", scale
    ones a level in "levels" (their line lists the level descriptors). Checked ones need no
    call."""
    return criterion.get("kind", "binary") in ("binary", "scale")


def levels_of(criterion: dict) -> int:
    """How many levels a scale criterion has (0 for any other kind)."""
    if criterion.get("kind") != "scale":
        return 0
    return len(criterion["scale"]["descriptors"])


def batch_line(spec: dict, criterion: dict) -> str:
    """A criterion's line in the batched prompt: "[id] (points) text", and for a scale
    criterion its levels, each with its descriptor."""
    text = " ".join(criterion["text"].split())
    points = render_points(criterion["points"])
    if criterion.get("kind") != "scale":
        return f"[{criterion['id']}] ({points} points) {text}"
    descriptors = criterion["scale"]["descriptors"]
    template = spec["judge"].get("batch_scale_line_template", BATCH_SCALE_LINE)
    return template.format(
        id=criterion["id"],
        points=points,
        text=text,
        levels=len(descriptors),
        descriptors="; ".join(
            f"{i} = {' '.join(d.split())}" for i, d in enumerate(descriptors, start=1)
        ),
    )


def batch_schema(spec: dict, criteria: list[dict]) -> dict:
    """The output schema of one batched call: the grader's, and for its scale criteria a
    "levels" list whose items are constrained per criterion (its id, a level in 1..N)."""
    judge = spec["judge"]
    schema = judge.get("batch_output_schema", BATCH_SCHEMA)
    scale = [c for c in criteria if c.get("kind") == "scale"]
    if not scale:
        return schema
    item = judge.get("batch_level_schema", BATCH_LEVEL_SCHEMA)
    branches = [
        {
            **item,
            "properties": {
                **item["properties"],
                "id": {"type": "string", "enum": [str(c["id"])]},
                "level": {"type": "integer", "enum": list(range(1, levels_of(c) + 1))},
            },
        }
        for c in scale
    ]
    properties = dict(schema["properties"])
    required = list(schema["required"])
    if len(scale) == len(criteria):  # nothing binary: no "verdicts" to give
        properties.pop("verdicts", None)
        required = [name for name in required if name != "verdicts"]
    properties["levels"] = {
        "type": "array",
        "items": branches[0] if len(branches) == 1 else {"anyOf": branches},
    }
    return {**schema, "properties": properties, "required": [*required, "levels"]}


def batch_messages(
    spec: dict,
    *,
    messages: list[dict],
    response: str,
    criteria: list[dict],
    about: str = "",
    conversation: render.Rendered | None = None,
    attachments=(),
):
    """The batched prompt, built from the grader's spec: the same fences and the same order as
    the per-criterion prompt (instructions and schema, conversation, response, criteria, then
    what an episode in the response fence is, then the criteria's guidance and examples).
    The criteria of one batch share one view of the response: all outcome, all trajectory, or
    all judged at the same step. `conversation` and `attachments` as for `judge_messages`."""
    if conversation is None:
        conversation = render.conversation_for_judge(messages)
    attached = (*conversation.attachments, *attachments)
    conversation = conversation.text
    lines = "\n".join(batch_line(spec, c) for c in criteria)
    # A grader that carries its own batch templates (in its hashed spec) wins over ours.
    judge = spec["judge"]
    system = judge.get("batch_system_template", BATCH_SYSTEM).format(
        schema=json.dumps(batch_schema(spec, criteria), sort_keys=True)
    )
    # A grader compiled with a reference answer carries it, shared by every criterion.
    reference = spec.get("reference") or ""
    template = judge.get("reference_template")
    reference_section = (
        template.format(reference=reference, reference_nonce=nonce(reference))
        if reference and template
        else ""
    )
    user = judge.get("batch_user_template", BATCH_USER).format(
        reference=reference_section,
        conversation=conversation,
        conversation_nonce=nonce(conversation),
        response=response,
        response_nonce=nonce(response),
        criteria=lines,
        criteria_nonce=nonce(lines),
        guidance=about + batch_guidance_section(spec, criteria),
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user_content(user, attached)},
    ]


def batch_template_id(spec: dict) -> str:
    """Names the batch templates a grader is graded with. They live here unless the spec
    carries them, so they are not always covered by the grader hash: verdict cache keys of
    batched runs include this instead."""
    judge = spec["judge"]
    parts = [
        judge.get("batch_system_template", BATCH_SYSTEM),
        judge.get("batch_user_template", BATCH_USER),
        json.dumps(judge.get("batch_output_schema", BATCH_SCHEMA), sort_keys=True),
    ]
    if judge.get("batch_guidance_template"):
        parts += [
            judge["batch_guidance_template"],
            json.dumps(judge.get("guidance_labels"), sort_keys=True),
        ]
    if any(c.get("kind") == "scale" for c in spec["criteria"]):
        # Scale criteria are batched too (before, they had calls of their own).
        parts += [
            judge.get("batch_scale_line_template", BATCH_SCALE_LINE),
            json.dumps(judge.get("batch_level_schema", BATCH_LEVEL_SCHEMA), sort_keys=True),
        ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def prompt_cache_key(
    grader_hash: str, messages: list[dict], response: str, conversation: str | None = None
) -> str:
    """Stable per (grader, conversation, response): every criterion of one response shares it,
    so a provider's prompt cache can reuse the shared prefix. `conversation`: the task's
    messages as rendered for the judge (default: for a judge of text only)."""
    if conversation is None:
        conversation = conversation_text(messages)
    return hashlib.sha256(
        f"{grader_hash}\n{content_hash(conversation)}\n{content_hash(response)}".encode()
    ).hexdigest()[:32]
