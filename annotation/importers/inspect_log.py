"""inspect-ai eval logs (`.eval` zip or `.json`) into episodes, read with inspect-ai's reader.

Each sample becomes one response of the eval's model to the task whose external id is the
sample's id (created, with the sample's input as its messages, when the project lacks it):

* `messages` — the sample's messages after its input, converted from inspect's ChatMessage
  types (assistant text, reasoning and tool calls; tool results with their call id; a
  system message a solver added stays in the episode);
* `final_state` — the sample's store, when it holds anything;
* `sample_index` — the epoch, from 0 (epoch 1 is sample 0);
* `metadata` — `tokens`, `input_tokens`, `output_tokens` (summed over the sample's
  model_usage), `wall_time_s` and `working_time_s`, and the eval's task and run id;
* `external_id` — the sample's uuid.

Errors name the sample's position in the log as its "line".
"""

from __future__ import annotations

import json

from annotation.importers import Found
from annotation.services import LineError
from rubrics import uploads


def read(upload, *, name: str) -> tuple[list[Found], list[LineError]]:
    """The episodes of the eval log `upload`, and the samples that could not be read."""
    from inspect_ai.log import read_eval_log

    upload.seek(0)
    fmt = "eval" if uploads.head_of(upload, 4) == uploads.ZIP_MAGIC else "json"
    upload.seek(0)
    try:
        log = read_eval_log(upload, format=fmt, resolve_attachments=True)
    except Exception as exc:  # any reader failure is a refusal of the file, named  # noqa: BLE001
        raise uploads.UploadRefused(
            f"'{name}' is not a readable inspect-ai eval log ({type(exc).__name__}: {exc})."
        ) from None
    if not log.samples:
        return [], [LineError(0, "samples", "the eval log holds no samples")]
    found, errors = [], []
    for number, sample in enumerate(log.samples, start=1):
        try:
            found.append(_sample(number, sample, log))
        except ValueError as exc:
            errors.append(LineError(number, "messages", str(exc)))
    return found, errors


def _sample(number: int, sample, log) -> Found:
    prompt = _prompt(sample.input)
    messages = list(sample.messages or [])
    inputs = [m for m in messages if getattr(m, "source", None) == "input"]
    if inputs:
        messages = [m for m in messages if getattr(m, "source", None) != "input"]
    else:  # a log without sources: the input comes first
        messages = messages[len(prompt) :]
    usage = list((sample.model_usage or {}).values())
    metadata: dict = {
        "inspect_task": log.eval.task,
        "inspect_run_id": log.eval.run_id,
    }
    if usage:
        metadata["input_tokens"] = sum(u.input_tokens or 0 for u in usage)
        metadata["output_tokens"] = sum(u.output_tokens or 0 for u in usage)
        metadata["tokens"] = sum(u.total_tokens or 0 for u in usage)
    if sample.total_time is not None:
        metadata["wall_time_s"] = sample.total_time
    if sample.working_time is not None:
        metadata["working_time_s"] = sample.working_time
    row = {
        "task_id": str(sample.id),
        "model": log.eval.model,
        "messages": [_message(m) for m in messages],
        "sample_index": max(0, (sample.epoch or 1) - 1),
        "metadata": metadata,
        "external_id": sample.uuid or "",
    }
    if sample.store:
        row["final_state"] = dict(sample.store)
    return Found(number=number, task_id=str(sample.id), prompt=prompt, row=row)


def _prompt(value) -> list[dict]:
    """The task's messages: the sample's input as plain chat turns."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return [{"role": m.role, "content": _text(m.content)[0]} for m in value]


def _text(content) -> tuple[str, str]:
    """(text, reasoning) of an inspect message's content: a string or a list of parts."""
    if isinstance(content, str):
        return content, ""
    texts, reasoning = [], []
    for part in content or []:
        kind = getattr(part, "type", "")
        if kind == "text":
            texts.append(part.text)
        elif kind == "reasoning":
            reasoning.append(getattr(part, "reasoning", "") or getattr(part, "summary", "") or "")
        else:  # images, audio, documents: file parts come with the files issue
            texts.append(f"[{kind} part]")
    return "\n".join(texts), "\n".join(r for r in reasoning if r)


def _message(message) -> dict:
    text, reasoning = _text(message.content)
    out: dict = {"role": message.role, "content": text}
    if message.role == "assistant":
        if reasoning:
            out["reasoning"] = reasoning
        calls = message.tool_calls or []
        if calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function,
                        "arguments": json.dumps(call.arguments or {}, ensure_ascii=False),
                    },
                }
                for call in calls
            ]
    elif message.role == "tool":
        out["tool_call_id"] = message.tool_call_id or ""
        if message.function:
            out["name"] = message.function
        if message.error is not None and not text:
            out["content"] = f"error ({message.error.type}): {message.error.message}"
    return out
