"""A hostile judge: a real HTTP server speaking `/v1/chat/completions` badly, on purpose.

Each reply a broken or hostile judge can send is a *scenario*, chosen by the marker
`hostile:<name>` anywhere in the prompt (tests put it in a criterion's text, so one rubric can
hold every scenario, one per criterion). A prompt without a marker gets an honest "met".
`EXPECTED[name]` says how Assay must end it: "met" (a verdict, read despite the noise) or
"error" (an error verdict with its reason and raw text). It serves runs, try-it and the
reward endpoint alike (tests/test_hostile_judge.py).
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from grading.judges.simulator import extract_response_and_criteria

MARKER = re.compile(r"hostile:([a-z0-9_]+)")
NESTED = 50_000  # brackets deep: Python's json raises RecursionError on this


def _verdict(ids: list[str], explanation: str = "Hostile judge: met.") -> dict:
    """A readable answer: one criterion, or a batch of them."""
    if ids:
        return {
            "verdicts": [{"id": i, "criteria_met": True, "explanation": explanation} for i in ids]
        }
    return {"criteria_met": True, "explanation": explanation}


def _completion(content: object, *, usage: str | None = None, model: object = "hostile") -> bytes:
    """A chat completion around `content`; `usage` is spliced in as raw JSON text, so it can
    hold what json.dumps never writes (1e999, 10**30 as digits)."""
    body = json.dumps(
        {
            "id": "hostile-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": "__USAGE__",
        }
    )
    fine = '{"prompt_tokens": 10, "completion_tokens": 5}'
    return body.replace('"__USAGE__"', usage if usage is not None else fine).encode()


def _text(ids: list[str], **kw) -> bytes:
    return _completion(json.dumps(_verdict(ids, **kw)), **{})


def _usage(raw: str):
    return lambda ids: _completion(json.dumps(_verdict(ids)), usage=raw)


def _payload(payload: object):
    return lambda ids: json.dumps(payload).encode()


# name -> (the body, given the batched criterion ids ([] for one criterion), and the end)
SCENARIOS = {
    # message.content of the wrong type
    "content_number": (lambda ids: _completion(42), "error"),
    "content_object": (lambda ids: _completion(_verdict(ids)), "error"),
    "content_list": (lambda ids: _completion([1, 2]), "error"),
    "content_null": (lambda ids: _completion(None), "error"),
    # ... or a list of text parts, as some gateways send: read as their text
    "content_text_parts": (
        lambda ids: _completion([{"type": "text", "text": json.dumps(_verdict(ids))}]),
        "met",
    ),
    # usage values that are not counts: the verdict stands, the counts are clamped or dropped
    "usage_strings": (
        _usage(
            '{"prompt_tokens": "12", "completion_tokens": "lots", '
            '"prompt_tokens_details": {"cached_tokens": "3"}}'
        ),
        "met",
    ),
    "usage_1e999": (_usage('{"prompt_tokens": 1e999, "completion_tokens": -1e999}'), "met"),
    "usage_huge_int": (_usage(f'{{"prompt_tokens": {10**30}, "completion_tokens": 7}}'), "met"),
    "usage_negative": (_usage('{"prompt_tokens": -50, "completion_tokens": -1.5}'), "met"),
    "usage_nan": (_usage('{"prompt_tokens": NaN, "completion_tokens": Infinity}'), "met"),
    "usage_not_object": (_usage("[1, 2, 3]"), "met"),
    "usage_huge_unreadable": (  # asked three times: the sums stay counts too
        lambda ids: _completion(
            "not a verdict", usage=f'{{"prompt_tokens": {10**30}, "completion_tokens": {10**30}}}'
        ),
        "error",
    ),
    # text the database cannot store as it is
    "explanation_nul": (lambda ids: _text(ids, explanation="before\x00after"), "met"),
    "explanation_surrogate": (lambda ids: _text(ids, explanation="lone \ud800 here"), "met"),
    "model_hostile": (
        lambda ids: _completion(json.dumps(_verdict(ids)), model="evil\x00\udfff" * 100),
        "met",
    ),
    "unparseable_nul_surrogate": (
        lambda ids: _completion("I think\x00 it is met \udc80 surely"),
        "error",
    ),
    "not_utf8_with_nul": (lambda ids: b"<html>\x00\xff\xfe oops</html>", "error"),
    # nesting that would exhaust the parser's recursion
    "nested_body": (lambda ids: b"[" * NESTED + b"]" * NESTED, "error"),
    "nested_content": (
        lambda ids: _completion('{"criteria_met": ' + "[" * NESTED + "]" * NESTED + "}"),
        "error",
    ),
    # text that made a parser take quadratic time (minutes of CPU for 100 kB)
    "unclosed_fences": (lambda ids: _completion("```{" * 20_000), "error"),
    "unclosed_escapes": (lambda ids: b"[" * 100 + b'"\\' * 50_000, "error"),
    # JSON of the wrong shape
    "top_level_list": (_payload([1, 2]), "error"),
    "top_level_string": (_payload("hello"), "error"),
    "choices_missing": (_payload({"object": "chat.completion"}), "error"),
    "choices_empty": (_payload({"choices": []}), "error"),
    "choices_not_list": (_payload({"choices": {"0": {"message": {"content": "x"}}}}), "error"),
    "message_not_object": (_payload({"choices": [{"message": "met"}]}), "error"),
    "verdict_wrong_types": (
        lambda ids: _completion('{"criteria_met": "yes", "explanation": 5}'),
        "error",
    ),
    "verdict_huge_number": (
        lambda ids: _completion('{"criteria_met": ' + "1" * 5000 + "}"),
        "error",
    ),
    "empty_body": (lambda ids: b"", "error"),
}
EXPECTED = {name: end for name, (_, end) in SCENARIOS.items()}


class _Handler(BaseHTTPRequestHandler):
    server: HostileJudge
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = json.loads(raw)
        prompt = "\n".join(str(m.get("content", "")) for m in request["messages"])
        found = MARKER.search(prompt)
        name = found.group(1) if found else "honest"
        _, criteria = extract_response_and_criteria(prompt)
        ids = [i for i, _ in criteria if i]
        with self.server.lock:
            self.server.requests[name] += 1
        if name == "honest":
            body = _completion(json.dumps(_verdict(ids)))
        else:
            body = SCENARIOS[name][0](ids)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HostileJudge(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # scenario -> requests received

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def total(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, daemon=True, name="hostile-judge").start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
