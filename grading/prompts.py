"""Render a grader's prompt templates for one response and criterion.

Graded text is fenced between lines that carry a nonce derived from the text itself, so a
response cannot close its own fence: to forge the closing line it would have to contain the
hash of itself. The same inputs always give the same prompt, which keeps verdicts cacheable
and reproducible from the grader hash.
"""

from __future__ import annotations

import hashlib
import json


def nonce(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def conversation_text(messages: list[dict]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


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


def output_schema(spec: dict, criterion: dict) -> dict:
    judge = spec["judge"]
    if criterion.get("kind") == "scale":
        return judge["scale_output_schema"]
    return judge["output_schema"]


def judge_messages(spec: dict, *, messages: list[dict], response: str, criterion: dict):
    judge = spec["judge"]
    conversation = conversation_text(messages)
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
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
