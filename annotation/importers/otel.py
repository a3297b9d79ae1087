"""OpenTelemetry GenAI spans exported as JSON into episodes: one episode per trace.

The file is OTLP JSON (`{"resourceSpans": [{"resource", "scopeSpans": [{"spans"}]}]}`, what
an OTLP/HTTP JSON exporter or a collector's file exporter writes; trace ids hex or base64) or
a plain JSON list of spans as the Python SDK's `span.to_json()` writes them (`context`,
`attributes`, `resource`), the shape Langfuse, Phoenix and other tracing tools export.

What is read from a trace's spans (GenAI semantic conventions):

* model chat spans: `gen_ai.input.messages` and `gen_ai.output.messages` (JSON text: messages
  with `role` and `parts`, a part being `text` with `content`, `tool_call` with `id`, `name`,
  `arguments`, `tool_call_response` with `id`, `response`, or `reasoning`), and
  `gen_ai.system_instructions`. Spans are read in start order: a span whose input repeats the
  conversation so far adds only what is new, as does one that records only new messages.
* `execute_tool` spans: `gen_ai.tool.name`, `gen_ai.tool.call.id`,
  `gen_ai.tool.call.arguments` and `gen_ai.tool.call.result`; a result the chat spans lack
  is placed after the assistant turn that made the call.
* the model: `gen_ai.request.model` (else `gen_ai.response.model`) of the first chat span.
* usage: `gen_ai.usage.input_tokens` / `output_tokens`, summed into the metadata's `tokens`,
  with `wall_time_s` from the trace's first start to its last end, and `trace_id`.

Assay's own attributes, on any span of the trace or on its resource:

* `assay.task_id` (required): the task's external id. A task the project lacks is created
  with the conversation before the first assistant turn as its messages.
* `assay.sample_index` (optional): else traces of one task and model are numbered 0, 1, ...
  in start order.
* `assay.final_state` (optional): the environment's state after the episode, as JSON text.

The episode's messages are the conversation from the first assistant turn on. Errors name
the trace's position in the file (by first start) as its "line".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from datetime import datetime

from annotation.importers import Found
from annotation.services import LineError
from rubrics import uploads

TASK_ID = "assay.task_id"
SAMPLE_INDEX = "assay.sample_index"
FINAL_STATE = "assay.final_state"


def read(upload, *, name: str) -> tuple[list[Found], list[LineError]]:
    upload.seek(0)
    raw = upload.read()
    try:
        document = uploads.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, uploads.JsonRefused) as exc:
        raise uploads.UploadRefused(f"'{name}' is not JSON spans ({exc}).") from None
    spans = list(_spans(document, name))
    if not spans:
        return [], [LineError(0, "spans", "the file holds no spans")]
    traces: dict[str, list[dict]] = defaultdict(list)
    for span in spans:
        traces[span["trace"]].append(span)
    ordered = sorted(traces.values(), key=lambda group: min(s["start"] for s in group))
    found, errors = [], []
    numbered: dict[tuple, int] = defaultdict(int)
    for number, group in enumerate(ordered, start=1):
        group.sort(key=lambda s: s["start"])
        try:
            item = _episode(number, group)
        except _Refused as exc:
            errors.append(LineError(number, exc.field, exc.message))
            continue
        key = (item.row["task_id"], item.row["model"])
        if "sample_index" not in item.row:
            item.row["sample_index"] = numbered[key]
        numbered[key] += 1
        found.append(item)
    return found, errors


class _Refused(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


# --- spans, from either shape --------------------------------------------------------------


def _spans(document, name: str):
    """Spans as {trace, name, start, end, attributes, resource}."""
    if isinstance(document, dict) and isinstance(
        document.get("resourceSpans", document.get("resource_spans")), list
    ):
        for resource_spans in document.get("resourceSpans", document.get("resource_spans")):
            if not isinstance(resource_spans, dict):
                continue
            resource = _attributes((resource_spans.get("resource") or {}).get("attributes"))
            scopes = resource_spans.get("scopeSpans", resource_spans.get("scope_spans")) or []
            for scope in scopes:
                for span in (scope or {}).get("spans") or []:
                    yield {
                        "trace": _trace_id(span.get("traceId", span.get("trace_id"))),
                        "name": span.get("name") or "",
                        "start": _nanos(span.get("startTimeUnixNano")),
                        "end": _nanos(span.get("endTimeUnixNano")),
                        "attributes": _attributes(span.get("attributes")),
                        "resource": resource,
                    }
        return
    if isinstance(document, dict) and "context" in document:
        document = [document]
    if not isinstance(document, list):
        raise uploads.UploadRefused(
            f"'{name}' holds no spans: give OTLP JSON (resourceSpans) or a list of spans."
        )
    for span in document:
        if not isinstance(span, dict):
            continue
        context = span.get("context") or {}
        resource = span.get("resource") or {}
        yield {
            "trace": _trace_id(context.get("trace_id", span.get("trace_id"))),
            "name": span.get("name") or "",
            "start": _iso_nanos(span.get("start_time")),
            "end": _iso_nanos(span.get("end_time")),
            "attributes": _attributes(span.get("attributes")),
            "resource": _attributes(resource.get("attributes")),
        }


def _trace_id(value) -> str:
    """Hex, whichever way it was written (0x-prefixed, plain hex, or base64 bytes)."""
    text = str(value or "")
    if text.startswith("0x"):
        return text[2:].lower()
    if len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.lower()
    try:
        return base64.b64decode(text, validate=True).hex()
    except (binascii.Error, ValueError):
        return text


def _nanos(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _iso_nanos(value) -> int:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(moment.timestamp() * 1_000_000) * 1_000


_VALUE_KINDS = {
    "stringValue": str,
    "string_value": str,
    "intValue": int,
    "int_value": int,
    "doubleValue": float,
    "double_value": float,
    "boolValue": bool,
    "bool_value": bool,
}


def _value(value):
    """An OTLP AnyValue ({"stringValue": ...}) as a plain value."""
    if not isinstance(value, dict):
        return value
    for kind, cast in _VALUE_KINDS.items():
        if kind in value:
            return cast(value[kind])
    array = value.get("arrayValue", value.get("array_value"))
    if isinstance(array, dict):
        return [_value(v) for v in array.get("values") or []]
    kvlist = value.get("kvlistValue", value.get("kvlist_value"))
    if isinstance(kvlist, dict):
        return _attributes(kvlist.get("values"))
    return None


def _attributes(raw) -> dict:
    """OTLP's [{"key", "value": AnyValue}] or a plain object, as a dict."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, list):
        return {}
    return {a["key"]: _value(a.get("value")) for a in raw if isinstance(a, dict) and "key" in a}


# --- one trace, one episode ----------------------------------------------------------------


def _first(spans: list[dict], key: str):
    for span in spans:
        if span["attributes"].get(key) not in (None, ""):
            return span["attributes"][key]
    for span in spans:
        if span["resource"].get(key) not in (None, ""):
            return span["resource"][key]
    return None


def _json_attribute(span: dict, key: str, where: str):
    value = span["attributes"].get(key)
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise _Refused(where, f"{key} is not valid JSON ({exc})") from None


def _episode(number: int, spans: list[dict]) -> Found:
    trace = spans[0]["trace"]
    task_id = _first(spans, TASK_ID)
    if not isinstance(task_id, str | int) or not str(task_id).strip():
        raise _Refused(TASK_ID, f"no span or resource of trace {trace} names its task ({TASK_ID})")
    chats = [
        s
        for s in spans
        if "gen_ai.input.messages" in s["attributes"] or "gen_ai.output.messages" in s["attributes"]
    ]
    if not chats:
        raise _Refused("gen_ai.output.messages", f"trace {trace} has no GenAI chat span")
    model = next(
        (
            s["attributes"].get("gen_ai.request.model")
            or s["attributes"].get("gen_ai.response.model")
            for s in chats
            if s["attributes"].get("gen_ai.request.model")
            or s["attributes"].get("gen_ai.response.model")
        ),
        None,
    )
    if not model:
        raise _Refused("gen_ai.request.model", f"no chat span of trace {trace} names its model")
    conversation = _conversation(chats)
    _add_tool_results(conversation, spans)
    first = next(
        (
            i
            for i, m in enumerate(conversation)
            if isinstance(m, dict) and m.get("role") == "assistant"
        ),
        None,
    )
    if first is None:
        raise _Refused("gen_ai.output.messages", f"trace {trace} has no assistant message")
    prompt = [
        {"role": m.get("role"), "content": m.get("content") or ""}
        for m in conversation[:first]
        if isinstance(m, dict) and m.get("role") in ("system", "developer", "user")
    ]
    usage_in = sum(_int(s["attributes"].get("gen_ai.usage.input_tokens")) for s in chats)
    usage_out = sum(_int(s["attributes"].get("gen_ai.usage.output_tokens")) for s in chats)
    metadata: dict = {"trace_id": trace}
    if usage_in or usage_out:
        metadata.update(input_tokens=usage_in, output_tokens=usage_out, tokens=usage_in + usage_out)
    starts = [s["start"] for s in spans if s["start"]]
    ends = [s["end"] for s in spans if s["end"]]
    if starts and ends:
        metadata["wall_time_s"] = round(max(0, max(ends) - min(starts)) / 1e9, 6)
    row: dict = {
        "task_id": str(task_id),
        "model": str(model),
        "messages": conversation[first:],
        "metadata": metadata,
        "external_id": trace,
    }
    sample_index = _first(spans, SAMPLE_INDEX)
    if sample_index is not None:
        row["sample_index"] = sample_index
    state_span = next((s for s in spans if FINAL_STATE in s["attributes"]), None)
    if state_span is not None:
        row["final_state"] = _json_attribute(state_span, FINAL_STATE, "final_state")
    elif isinstance(_first(spans, FINAL_STATE), str):
        try:
            row["final_state"] = json.loads(_first(spans, FINAL_STATE))
        except ValueError as exc:
            raise _Refused("final_state", f"{FINAL_STATE} is not valid JSON ({exc})") from None
    return Found(number=number, task_id=str(task_id), prompt=prompt, row=row)


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _conversation(chats: list[dict]) -> list[dict]:
    """The whole conversation from the chat spans, in start order."""
    history: list[dict] = []
    instructions = 0  # leading system messages that came from gen_ai.system_instructions
    for k, span in enumerate(chats):
        where = f"span {span['name'] or k}"
        if not history:
            given = _json_attribute(span, "gen_ai.system_instructions", where)
            if given:
                text = _parts_text(given) if isinstance(given, list) else str(given)
                history.append({"role": "system", "content": text})
                instructions = 1
        incoming: list[dict] = []
        for message in _listed(span, "gen_ai.input.messages", where):
            incoming += _chat_messages(message)
        so_far = history[instructions:]
        if incoming[: len(so_far)] == so_far:
            incoming = incoming[len(so_far) :]  # the span repeats the conversation so far
        # else: the span holds only the turn's new messages
        history += incoming
        for message in _listed(span, "gen_ai.output.messages", where):
            history += _chat_messages(message)
    return history


def _listed(span: dict, key: str, where: str) -> list:
    value = _json_attribute(span, key, where)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Refused(where, f"{key} must be a JSON list of messages")
    return value


def _parts_text(parts: list) -> str:
    return "\n".join(str(p.get("content", p.get("text", ""))) for p in parts if isinstance(p, dict))


def _chat_messages(message) -> list[dict]:
    """A GenAI message (role, parts) as OpenAI chat messages: tool responses become one tool
    message each. Anything else is passed on for the content model to name."""
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list):
        return [message]
    role = message.get("role")
    texts, calls, reasoning, results = [], [], [], []
    for part in message["parts"]:
        if not isinstance(part, dict):
            texts.append(str(part))
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("content", part.get("text", ""))))
        elif kind == "tool_call":
            arguments = part.get("arguments")
            calls.append(
                {
                    "id": part.get("id"),
                    "type": "function",
                    "function": {
                        "name": part.get("name"),
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else json.dumps(arguments or {}, ensure_ascii=False),
                    },
                }
            )
        elif kind == "tool_call_response":
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": part.get("id"),
                    "content": _text(part.get("response")),
                }
            )
        elif kind == "reasoning":
            reasoning.append(str(part.get("content", "")))
        else:  # blobs, files, uris: file parts come with the files issue
            texts.append(f"[{kind} part]")
    if results and not texts and not calls:
        return results
    out: dict = {"role": role, "content": "\n".join(texts)}
    if calls:
        out["tool_calls"] = calls
    if reasoning and role == "assistant":
        out["reasoning"] = "\n".join(reasoning)
    return [out, *results]


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _add_tool_results(conversation: list[dict], spans: list[dict]) -> None:
    """Place after each assistant turn the results of its calls that only `execute_tool` spans
    recorded."""
    tools = {}
    for span in spans:
        attributes = span["attributes"]
        is_tool = attributes.get("gen_ai.operation.name") == "execute_tool" or span[
            "name"
        ].startswith("execute_tool")
        call_id = attributes.get("gen_ai.tool.call.id")
        if is_tool and call_id and "gen_ai.tool.call.result" in attributes:
            tools[str(call_id)] = (
                attributes.get("gen_ai.tool.name") or "",
                _text(attributes["gen_ai.tool.call.result"]),
            )
    if not tools:
        return
    answered = {
        m.get("tool_call_id")
        for m in conversation
        if isinstance(m, dict) and m.get("role") == "tool"
    }
    i = 0
    while i < len(conversation):
        message = conversation[i] if isinstance(conversation[i], dict) else {}
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        i += 1
        if not isinstance(calls, list):
            continue
        while (
            i < len(conversation)
            and isinstance(conversation[i], dict)
            and conversation[i].get("role") == "tool"
        ):
            i += 1  # after the results already there
        for call in calls:
            call_id = call.get("id") if isinstance(call, dict) else None
            if call_id in tools and call_id not in answered:
                name, result = tools[call_id]
                conversation.insert(
                    i, {"role": "tool", "tool_call_id": call_id, "name": name, "content": result}
                )
                answered.add(call_id)
                i += 1
