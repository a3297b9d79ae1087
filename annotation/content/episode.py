"""The content of a response: a plain text, or an episode in the OpenAI chat format.

An episode is a list of messages, an optional `final_state` (a JSON snapshot of the
environment after the episode: a database, a calendar, a file manifest) and `metadata`
(steps, tokens, wall time, anything else the producer kept)::

    {"messages": [
        {"role": "user", "content": "Refund order A17, it arrived broken."},
        {"role": "assistant", "content": "Let me look it up.", "reasoning": "...",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "lookup_order", "arguments": "{\"id\": \"A17\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{\"status\": \"delivered\"}"},
        {"role": "assistant", "content": "Done: your refund is on its way."}],
     "final_state": {"orders": {"A17": {"refunded": true}}},
     "metadata": {"steps": 2, "tokens": 812, "wall_time_s": 4.1}}

A message's `content` is a string or a list of parts: text (`{"type": "text", "text": ...}`),
images (`{"type": "image_url", "image_url": {"url": ...}}`) and files (`{"type": "file",
"file": {"file_data": ..., "filename": ...}}`), as OpenAI takes them. An incoming image or file
is a base64 `data:` URI, a relative path inside an uploaded bundle (`{"url": "chart.png"}`,
`{"file": {"path": "out/memo.docx"}}`) or `sha256:<hash>` of a file the project holds; a
`FileIntake` (`annotation.content.intake`) checks and stores it (`rubrics.files.store`) and
the part keeps its hash, kind, size and sanitised name. Nothing is fetched from a URL. Tool
call arguments may come as a JSON string (as
OpenAI sends them) or as an object; either way they must be a JSON object.

Validation names the field of the first problem in each message, as a path:
``messages[3].tool_calls[0].function.arguments: not valid JSON (...)``; importers add the
line. A plain text response is the one-message case: `Episode.from_text`.

**Steps.** A step is an assistant turn: the index of that assistant message in `messages`
(0-based). Step criteria are judged at each assistant turn, or at each turn that calls a named
tool (several calls of that tool in one turn are one step). Verdicts store the step index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from rubrics import uploads
from rubrics.files import parts as file_parts
from rubrics.files.store import SHA256, FileRef

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_MESSAGES = 5_000
MAX_TOOL_CALLS = 200  # in one assistant message
MAX_NAME = 200
PART_TYPES = ("text", "image_url", "file")
MAX_FILE_PARTS = 200  # in one episode
METADATA_NUMBERS = ("steps", "tokens", "wall_time_s")


class ContentError(ValueError):
    """Content that is not valid; `field` is the path of the wrong part, e.g.
    ``messages[3].tool_calls[0].function.arguments``."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Part:
    type: str  # one of PART_TYPES
    text: str = ""
    file: FileRef | None = None  # image_url and file parts

    def as_json(self) -> dict:
        if self.file is None:
            return {"type": self.type, "text": self.text}
        if self.type == "image_url":
            return {
                "type": "image_url",
                "image_url": {"url": f"sha256:{self.file.sha256}"},
                "file": self.file.as_json(),
            }
        return {"type": "file", "file": self.file.as_json()}


class FileIntake:
    """What takes the images and files an incoming episode carries (see
    `annotation.content.intake`): `take(where, source, name, image=...)` stores the file
    `source` names (a data: URI, a bundle path, or sha256:<hash>; only an image when `image`)
    and returns its FileRef, or raises ContentError at `where`."""

    def take(
        self, where: str, source: str, name: str, *, image: bool = False
    ) -> FileRef:  # pragma: no cover
        raise NotImplementedError


# `Episode.load` reads stored content, whose file parts were checked when they came in.
TRUSTED = FileIntake()


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: object  # a JSON object (dict), parsed

    def arguments_json(self, indent: int | None = None) -> str:
        return json.dumps(self.arguments, ensure_ascii=False, sort_keys=True, indent=indent)

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments_json()},
        }


@dataclass(frozen=True)
class Message:
    role: str
    parts: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""  # a tool message's tool name (filled from its call when absent)
    reasoning: str = ""

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.parts if p.type == "text")

    @property
    def files(self) -> tuple[FileRef, ...]:
        """The images and files this message carries, in order."""
        return tuple(p.file for p in self.parts if p.file is not None)

    def as_json(self) -> dict:
        out: dict = {"role": self.role}
        if len(self.parts) == 1 and self.parts[0].type == "text" or not self.parts:
            out["content"] = self.text
        else:
            out["content"] = [p.as_json() for p in self.parts]
        if self.tool_calls:
            out["tool_calls"] = [c.as_json() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.name:
            out["name"] = self.name
        if self.reasoning:
            out["reasoning"] = self.reasoning
        return out


_ABSENT = object()


@dataclass(frozen=True)
class Episode:
    messages: tuple[Message, ...]
    final_state: object = None  # any JSON; None when the producer kept none
    has_final_state: bool = False
    metadata: dict = field(default_factory=dict)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str) -> Episode:
        """A plain text response: one assistant message."""
        return cls(messages=(Message("assistant", (Part("text", text or ""),)),))

    @classmethod
    def parse(
        cls,
        value: object,
        *,
        final_state: object = _ABSENT,
        metadata: object = None,
        files: FileIntake | None = None,
    ):
        """Validate and normalise `value`: a list of messages, or an object with `messages`
        (and optionally `final_state`, `metadata`). Raises ContentError naming the field.
        Image and file parts are taken by `files` (which stores them); without one they are
        refused, naming the part."""
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"messages", "final_state", "metadata"})
            if unknown:
                raise ContentError(
                    unknown[0], "unknown field; an episode has messages, final_state and metadata"
                )
            if "final_state" in value:
                final_state = value["final_state"]
            metadata = value.get("metadata", metadata)
            value = value.get("messages")
        if not isinstance(value, list) or not value:
            raise ContentError("messages", "give a non-empty list of chat messages")
        if len(value) > MAX_MESSAGES:
            raise ContentError("messages", f"at most {MAX_MESSAGES:,} messages per episode")
        messages = []
        calls: dict[str, ToolCall] = {}
        answered: set[str] = set()
        for index, raw in enumerate(value):
            message = _message(index, raw, calls, answered, files)
            messages.append(message)
        if sum(len(m.files) for m in messages) > MAX_FILE_PARTS:
            raise ContentError("messages", f"at most {MAX_FILE_PARTS} images and files per episode")
        if not any(m.role == "assistant" for m in messages):
            raise ContentError("messages", "an episode needs at least one assistant message")
        meta = _metadata(metadata)
        has_state = final_state is not _ABSENT and final_state is not None
        return cls(
            messages=tuple(messages),
            final_state=final_state if has_state else None,
            has_final_state=has_state,
            metadata=meta,
        )

    @classmethod
    def load(cls, stored: dict | None, text: str = "") -> Episode:
        """The episode of a stored response: its `content` (as `as_json` wrote it, trusted), or
        its text as one message when it has none."""
        if not stored:
            return cls.from_text(text)
        return cls.parse(stored, files=TRUSTED)

    # --- reading ------------------------------------------------------------------------

    @property
    def is_text(self) -> bool:
        """One assistant message with text only, no state: today's plain response."""
        m = self.messages
        return (
            len(m) == 1
            and m[0].role == "assistant"
            and all(p.type == "text" for p in m[0].parts)
            and not m[0].tool_calls
            and not m[0].reasoning
            and not self.has_final_state
            and not self.metadata
        )

    @property
    def final_text(self) -> str:
        """The final answer: the text of the last assistant message that has any."""
        for message in reversed(self.messages):
            if message.role == "assistant" and message.text.strip():
                return message.text
        return ""

    def steps(self, tool: str = "") -> list[int]:
        """The step indexes: every assistant turn, or (with `tool`) every turn that calls it."""
        return [
            i
            for i, m in enumerate(self.messages)
            if m.role == "assistant" and (not tool or any(c.name == tool for c in m.tool_calls))
        ]

    def tool_calls(self) -> Iterator[tuple[int, ToolCall]]:
        """(message index, call) in the order the calls were made."""
        for i, m in enumerate(self.messages):
            for call in m.tool_calls:
                yield i, call

    def files(self) -> Iterator[tuple[int, FileRef]]:
        """(message index, file) of every image and file part, in order."""
        for i, m in enumerate(self.messages):
            for ref in m.files:
                yield i, ref

    def tool_result(self, call_id: str) -> Message | None:
        for m in self.messages:
            if m.role == "tool" and m.tool_call_id == call_id:
                return m
        return None

    def upto(self, step: int) -> Episode:
        """The episode as it stood at `step`: its messages up to and including that one."""
        return Episode(messages=self.messages[: step + 1], metadata=self.metadata)

    def scanned_texts(self) -> Iterator[tuple[str, str]]:
        """(where, text) of everything an agent or its tools wrote, for the injection
        detector: assistant turns (text, reasoning, call arguments), tool outputs, and the
        text of the documents they carry (a memo that tells the grader what to answer reaches
        the judge as its converted text)."""
        for i, m in enumerate(self.messages):
            if m.role == "assistant":
                if m.text:
                    yield f"message #{i + 1}", m.text
                if m.reasoning:
                    yield f"message #{i + 1}, reasoning", m.reasoning
                for call in m.tool_calls:
                    yield f"message #{i + 1}, arguments of {call.name}", call.arguments_json()
            elif m.role == "tool" and m.text:
                yield f"message #{i + 1}, output of {m.name}", m.text
            if m.role in ("assistant", "tool"):
                for ref in m.files:
                    if text := _document_text(ref):
                        yield f"message #{i + 1}, file {ref.name}", text

    # --- storing and exporting ----------------------------------------------------------

    def as_json(self) -> dict:
        """The stored and exported shape (OpenAI chat format); `parse` reads it back."""
        out: dict = {"messages": [m.as_json() for m in self.messages]}
        if self.has_final_state:
            out["final_state"] = self.final_state
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    def stored(self) -> dict | None:
        """What Response.content holds: None for a plain text (Response.text says it all)."""
        return None if self.is_text else self.as_json()


def _document_text(ref: FileRef) -> str:
    """A stored document's converted text; "" for images and for files that cannot be read
    (the judge is told of those where they are rendered)."""
    from rubrics.files import store
    from rubrics.files.sniff import FileRefused

    if ref.is_image:
        return ""
    try:
        return store.converted(ref).text
    except (FileRefused, OSError):
        return ""


# --- validation --------------------------------------------------------------------------


def _message(index: int, raw: object, calls: dict, answered: set, files) -> Message:
    at = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise ContentError(at, "each message must be an object with a role")
    role = raw.get("role")
    if role not in ROLES:
        raise ContentError(f"{at}.role", f"unknown role {_short(role)}; one of {', '.join(ROLES)}")
    known = {
        "role",
        "content",
        "tool_calls",
        "tool_call_id",
        "name",
        "reasoning",
        "reasoning_content",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ContentError(
            f"{at}.{unknown[0]}", "unknown field; a message has " + ", ".join(sorted(known))
        )
    parts = _parts(at, raw.get("content"), files)
    reasoning = raw.get("reasoning", raw.get("reasoning_content")) or ""
    if not isinstance(reasoning, str):
        raise ContentError(f"{at}.reasoning", "must be text")
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id = ""
    name = raw.get("name") or ""
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise ContentError(f"{at}.name", f"must be text of at most {MAX_NAME} characters")
    if raw.get("tool_calls") not in (None, []):
        if role != "assistant":
            raise ContentError(f"{at}.tool_calls", "only assistant messages call tools")
        tool_calls = _tool_calls(at, raw["tool_calls"], calls)
    if role == "tool":
        tool_call_id = raw.get("tool_call_id")
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise ContentError(f"{at}.tool_call_id", "a tool message names the call it answers")
        call = calls.get(tool_call_id)
        if call is None:
            raise ContentError(
                f"{at}.tool_call_id",
                f"no earlier assistant tool call has id {_short(tool_call_id)}",
            )
        if tool_call_id in answered:
            raise ContentError(
                f"{at}.tool_call_id", f"call {_short(tool_call_id)} is answered twice"
            )
        answered.add(tool_call_id)
        name = name or call.name
    elif raw.get("tool_call_id"):
        raise ContentError(f"{at}.tool_call_id", "only tool messages answer a call")
    if role != "assistant" and reasoning:
        raise ContentError(f"{at}.reasoning", "only assistant messages carry reasoning")
    return Message(role, parts, tool_calls, tool_call_id, name, reasoning)


def _parts(at: str, content: object, files: FileIntake | None) -> tuple[Part, ...]:
    if content is None:
        return ()
    if isinstance(content, str):
        return (Part("text", content),) if content else ()
    if not isinstance(content, list):
        raise ContentError(f"{at}.content", "must be text or a list of parts")
    parts = []
    for k, raw in enumerate(content):
        where = f"{at}.content[{k}]"
        if isinstance(raw, str):
            parts.append(Part("text", raw))
            continue
        if not isinstance(raw, dict) or raw.get("type") not in PART_TYPES:
            kind = raw.get("type") if isinstance(raw, dict) else None
            raise ContentError(
                f"{where}.type",
                f"unknown part type {_short(kind)}; one of {', '.join(PART_TYPES)}",
            )
        if raw["type"] == "text":
            text = raw.get("text")
            if not isinstance(text, str):
                raise ContentError(f"{where}.text", "a text part needs its text")
            parts.append(Part("text", text))
        else:
            parts.append(Part(raw["type"], file=_file_part(where, raw, files)))
    return tuple(parts)


def _file_part(where: str, raw: dict, files: FileIntake | None) -> FileRef:
    """The file an image_url or file part names: stored already (`files` is TRUSTED), or
    taken by `files` from its data: URI, bundle path or sha256: reference."""
    kind = raw["type"]
    meta = raw.get("file")
    if meta is not None and not isinstance(meta, dict):
        raise ContentError(f"{where}.file", "must be an object")
    meta = meta or {}
    if files is TRUSTED:
        sha = meta.get("sha256")
        if not isinstance(sha, str) or not SHA256.match(sha):
            raise ContentError(f"{where}.file.sha256", "a stored file part names its hash")
        kind_, name_ = str(meta.get("kind", "")), str(meta.get("filename", ""))
        return FileRef(sha, kind_, name_, int(meta.get("size") or 0))
    try:
        field, url, name = file_parts.source_of(where, raw)
    except file_parts.PartRefused as exc:
        raise ContentError(exc.field, exc.message) from None
    if files is None:
        raise ContentError(field, "images and files are not taken here; send text parts")
    ref = files.take(field, url, name, image=kind == "image_url")
    if kind == "image_url" and not ref.is_image:
        raise ContentError(
            field, f"'{ref.name}' is a {ref.kind} file, not an image: send it as a file part"
        )
    return ref


def _tool_calls(at: str, raw: object, calls: dict) -> tuple[ToolCall, ...]:
    if not isinstance(raw, list):
        raise ContentError(f"{at}.tool_calls", "must be a list of calls")
    if len(raw) > MAX_TOOL_CALLS:
        raise ContentError(f"{at}.tool_calls", f"at most {MAX_TOOL_CALLS} calls in one message")
    out = []
    for k, item in enumerate(raw):
        where = f"{at}.tool_calls[{k}]"
        if not isinstance(item, dict):
            raise ContentError(where, "must be an object with id and function")
        function = item.get("function")
        if not isinstance(function, dict):
            # The flat shape some tracers write: {"id", "name", "arguments"}.
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
        call_id = item.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise ContentError(f"{where}.id", "a tool call needs an id, for its result to name")
        if call_id in calls:
            raise ContentError(f"{where}.id", f"id {_short(call_id)} is used by an earlier call")
        name = function.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise ContentError(f"{where}.function.name", "give the tool's name")
        arguments = function.get("arguments")
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str):
            # Capped in depth like every JSON Assay reads: arguments nested thousands deep
            # are a named error here, never a RecursionError.
            try:
                arguments = uploads.loads(arguments)
            except uploads.JsonRefused as exc:
                raise ContentError(f"{where}.function.arguments", str(exc)) from None
        if not isinstance(arguments, dict):
            raise ContentError(f"{where}.function.arguments", "must be a JSON object")
        call = ToolCall(call_id, name.strip(), arguments)
        calls[call_id] = call
        out.append(call)
    return tuple(out)


def _metadata(raw: object) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ContentError("metadata", "must be an object")
    for key in METADATA_NUMBERS:
        value = raw.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise ContentError(f"metadata.{key}", "must be a number >= 0")
    return dict(raw)


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."
