"""The judge simulator: a real HTTP server speaking OpenAI's `/v1/chat/completions`.

It exists so tests, benchmarks and offline demos can grade without a paid API. Its verdicts
are deterministic by one documented rule, so a test can predict every score:

    The *key words* of a criterion are its lower-cased words of five or more letters, minus
    the rubric-speak in `STOPWORDS` ("response", "mentions", "recommends", ...). A key word
    is *found* when some word of the graded response starts with the key word's first five
    letters (a crude stem: "hydrate" finds "hydration"). The criterion is met when at least
    half of its key words are found; a criterion with no key words is never met.
    A scale criterion (1..N) gets level 1 + round(fraction of key words found x (N - 1)),
    the key words being those of its first line (in a batched prompt: of its text before
    its levels), answered in "levels" when batched.

**Episodes.** A trajectory criterion's prompt fences the whole episode as the judge reads it
(annotation.content.render: "#2 assistant: ...", "   calls lookup_order (c1) {...}",
"#3 tool lookup_order (c1): ...", "FINAL STATE: ..."), and the rule above applies to all of
that text: every message, tool name, argument, tool output and the final state. A step
criterion's prompt fences the episode up to the step and says, after the fence, to judge
only the last assistant turn shown (`STEP_MARK`); the simulator then applies the rule to
that turn alone: the text from the last line that starts "#N assistant:" to the end of the
fence (its text, reasoning and tool calls with their arguments, never an earlier message nor
a tool's output). So a step criterion's verdict at step i depends only on what the agent
wrote and called at step i: "Calls lookup_order before refunding" is met at a step that
calls lookup_order (its key words "lookup" and "order" are found in the call line; words
are split at underscores) and not at one that only writes text.

**Files.** A document in the graded text is its converted text under its file line, inside
the response fence (annotation.content.render), so the rule above reads it like any other
text: a criterion is met when half its key words are found in the fenced text *including*
the converted text of its files (a spreadsheet's cells read as "B3=1250000", split into words
like the rest; a step criterion: the files of the turn judged).

**Images.** A criterion is *visual* when it has a word of `VISUAL_WORDS` (image, chart,
figure, photo, diagram, graph, picture, screenshot, and their plurals). A visual criterion of
a prompt that concerns images (the request carries ``image_url`` parts, or the prompt names
an image with "[image: ...]", in the response or the task) is decided by this rule instead:

* no ``image_url`` part reached the simulator (a judge that cannot see images): not met,
  "no image reached the judge";
* otherwise the simulator reads each attached image's *colour*: the most frequent of
  `COLOURS` (red, green, blue, yellow, orange, purple, black, grey, white) among its pixels
  that are not near-white (white only when every pixel is). The criterion is met when every
  colour word it has names the colour of some attached image, and at least half of its other
  key words (its visual words count as found: the judge sees the image) are found in the
  fenced text, as above.

So "The chart is red" is met for a judge sent a mostly red chart, not met for one sent a blue
chart, and not met for a judge that cannot see images, whatever the text says. A criterion
with no visual word, or a prompt without images, is decided by the rules above unchanged.

A **gullible** simulator (`SimulatorConfig(gullible=True)`, `judge_simulator --gullible`)
stands in for a judge that obeys the graded text, so tests can show what prompt injection
does: when the fenced response carries words aimed at a grader (`GULLIBLE_CUES`: "grader",
"criteria_met", "ignore previous instructions", "full marks", a fake fence, their
translations...) or is a bare "master key" reply (":", "Thought process:", "Solution"), every
criterion is met and a scale criterion gets its top level. It reads the text as a model
would: invisible characters removed, Unicode tag characters decoded, look-alikes normalised.
This list is the simulator's own and deliberately separate from Assay's detector
(grading.injection), so a test that the detector catches what fools the gullible judge is
not the same code agreeing with itself.

Every reply carries the header `X-Assay-Simulator: 1`, and the model name `assay-simulator/...`,
so Assay can label verdicts from it as simulated. Faults can be injected at a set rate: 429
with Retry-After, 500, a reply slower than any sane client timeout, and malformed JSON.
`GET /stats` reports requests seen and the peak of concurrent requests.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STOPWORDS = frozenset(
    [
        "about",
        "above",
        "accurate",
        "accurately",
        "acknowledges",
        "addresses",
        "adequately",
        "advises",
        "after",
        "again",
        "against",
        "along",
        "already",
        "although",
        "always",
        "another",
        "answer",
        "answers",
        "appropriate",
        "appropriately",
        "around",
        "asked",
        "asking",
        "avoid",
        "avoids",
        "based",
        "because",
        "before",
        "being",
        "below",
        "between",
        "brief",
        "briefly",
        "clear",
        "clearly",
        "complete",
        "completely",
        "concise",
        "correct",
        "correctly",
        "could",
        "describes",
        "detail",
        "details",
        "discuss",
        "discusses",
        "doesn",
        "during",
        "either",
        "ensure",
        "ensures",
        "especially",
        "every",
        "explain",
        "explains",
        "explicitly",
        "fails",
        "following",
        "further",
        "given",
        "gives",
        "helpful",
        "identifies",
        "include",
        "includes",
        "including",
        "indicate",
        "indicates",
        "instead",
        "itself",
        "least",
        "makes",
        "mention",
        "mentions",
        "model",
        "models",
        "might",
        "notes",
        "other",
        "otherwise",
        "particular",
        "please",
        "point",
        "points",
        "properly",
        "provide",
        "provided",
        "provides",
        "providing",
        "rather",
        "recommend",
        "recommends",
        "recommended",
        "relevant",
        "request",
        "response",
        "responses",
        "should",
        "specific",
        "specifically",
        "state",
        "states",
        "statement",
        "still",
        "suggest",
        "suggests",
        "their",
        "there",
        "these",
        "those",
        "though",
        "through",
        "under",
        "unless",
        "until",
        "using",
        "where",
        "whether",
        "which",
        "while",
        "within",
        "without",
        "would",
    ]
)

FAULT_KINDS = ("429", "500", "timeout", "malformed")
WORD = re.compile(r"[a-z0-9]+")


def key_words(criterion: str) -> list[str]:
    """The criterion's key words, in order of first appearance, without repeats."""
    seen: dict[str, None] = {}
    for word in WORD.findall(criterion.lower()):
        if len(word) >= 5 and word not in STOPWORDS and not word.isdigit():
            seen.setdefault(word, None)
    return list(seen)


def simulated_verdict(criterion: str, response: str) -> tuple[bool, str]:
    """Apply the simulator's rule: (criteria_met, explanation)."""
    keys = key_words(criterion)
    stems = {w[:5] for w in WORD.findall(response.lower()) if len(w) >= 5}
    found = [k for k in keys if k[:5] in stems]
    met = bool(keys) and 2 * len(found) >= len(keys)
    missing = [k for k in keys if k not in found]
    explanation = (
        f"Simulated verdict: found {len(found)} of {len(keys)} key words"
        + (f" ({', '.join(found)})" if found else "")
        + (f"; missing: {', '.join(missing)}" if missing else "")
        + "."
    )
    return met, explanation


def simulated_scale(criterion: str, response: str, levels: int) -> tuple[int, str]:
    keys = key_words(criterion)
    stems = {w[:5] for w in WORD.findall(response.lower()) if len(w) >= 5}
    found = [k for k in keys if k[:5] in stems]
    fraction = len(found) / len(keys) if keys else 0.0
    level = 1 + round(fraction * (levels - 1))
    return (
        level,
        f"Simulated level {level} of {levels}: found {len(found)} of {len(keys)} key words.",
    )


# --- Images ------------------------------------------------------------------------------

VISUAL_WORDS = frozenset(
    [
        "image",
        "images",
        "chart",
        "charts",
        "figure",
        "figures",
        "photo",
        "photos",
        "diagram",
        "diagrams",
        "graph",
        "graphs",
        "picture",
        "pictures",
        "screenshot",
        "screenshots",
    ]
)
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "orange": (245, 140, 20),
    "purple": (130, 40, 170),
    "black": (0, 0, 0),
    "grey": (128, 128, 128),
}

COLOUR_WORDS = frozenset([*COLOURS, "white"])


def is_visual(criterion: str) -> bool:
    return any(w in VISUAL_WORDS for w in WORD.findall(criterion.lower()))


def image_colour(data_uri: str) -> str:
    """An image's colour as the simulator reads it (see the module doc), or "" when the data
    is not an image Pillow reads."""
    import base64
    import io

    from PIL import Image

    try:
        data = base64.b64decode(data_uri.split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail((64, 64))
            raw = img.tobytes()  # RGB triples (getdata is deprecated in Pillow 13)
            pixels = [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]
    except (ValueError, IndexError, OSError, Image.DecompressionBombError):
        return ""
    counts: dict[str, int] = {}
    for r, g, b in pixels:
        if min(r, g, b) > 225:
            continue  # near-white: the background
        name = min(
            COLOURS,
            key=lambda c: sum((x - y) ** 2 for x, y in zip(COLOURS[c], (r, g, b), strict=True)),
        )
        counts[name] = counts.get(name, 0) + 1
    if not counts:
        return "white"
    return max(counts, key=lambda c: counts[c])


def visual_verdict(criterion: str, response: str, colours: list[str]) -> tuple[bool, str]:
    """A visual criterion of a prompt with images (module doc): `colours`, of the images
    attached (none: the judge saw no image)."""
    if not colours:
        return (
            False,
            "Simulated verdict: the criterion is about an image; no image reached the judge.",
        )
    words = WORD.findall(criterion.lower())
    wanted = [w for w in dict.fromkeys(words) if w in COLOUR_WORDS]
    missing_colours = [c for c in wanted if c not in colours]
    keys = [k for k in key_words(criterion) if k not in VISUAL_WORDS and k not in COLOUR_WORDS]
    stems = {w[:5] for w in WORD.findall(response.lower()) if len(w) >= 5}
    found = [k for k in keys if k[:5] in stems]
    seen = [w for w in dict.fromkeys(words) if w in VISUAL_WORDS]
    met = not missing_colours and 2 * (len(found) + len(seen)) >= len(keys) + len(seen)
    explanation = (
        f"Simulated verdict: saw {len(colours)} image(s) ({', '.join(colours)})"
        + (f"; colour not seen: {', '.join(missing_colours)}" if missing_colours else "")
        + f"; found {len(found)} of {len(keys)} other key words."
    )
    return met, explanation


def prompt_of(messages: list) -> tuple[str, list[str]]:
    """The prompt's text (a list content's text parts joined) and the data: URIs of its
    image_url parts."""
    texts, images = [], []
    for m in messages:
        if not isinstance(m, dict):
            continue
        content = m.get("content", "")
        if not isinstance(content, list):
            texts.append(str(content))
            continue
        own = []
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                own.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                url = part.get("image_url", {})
                url = url.get("url", "") if isinstance(url, dict) else str(url)
                images.append(url)
        texts.append("\n".join(own))
    return "\n".join(texts), images


SCALE_LINE = re.compile(r"Rate the response from 1 to (\d+)")
# A scale criterion's line in a batched prompt: its own text, then this, then its levels.
BATCH_SCALE_MARK = " (Scale criterion: "


def _batch_reply(verdicts: list[dict], levels: list[dict]) -> dict:
    """A batched answer: binary criteria in "verdicts", scale criteria in "levels"."""
    reply: dict = {"verdicts": verdicts} if verdicts or not levels else {}
    if levels:
        reply["levels"] = levels
    return reply


# What a gullible judge takes as an instruction to it (lower-case substrings of the text as
# a model reads it).
GULLIBLE_CUES = (
    "grader",
    "grading",
    "judge",
    "evaluat",
    "assessor",
    "rater",
    "reviewer",
    "scorer",
    "scoring",
    "whoever marks",
    "criteria_met",
    "criterion_met",
    '"met"',
    "'met'",
    "verdict",
    "criterion is met",
    "criterion is satisfied",
    "criteria are met",
    "criteria met",
    "criteria have all been met",
    "rubric",
    "every criterion",
    "every requirement",
    "every item",
    "all boxes",
    "full marks",
    "full credit",
    "top marks",
    "maximum score",
    "10/10",
    "score=",
    "ignore all previous",
    "ignore previous",
    "disregard",
    "forget everything",
    "new system instructions",
    "system:",
    "developer:",
    "system notice",
    "system-level",
    "<|im_start|>",
    "[inst]",
    ">>>",
    "<<<",
    "</response>",
    "end of response",
    "# rubric criterion",
    "mark this response",
    "as fully correct",
    "treat it as gold",
    "pre-approved",
    "assessment result",
    # Other languages
    "evaluador",
    "calificación",
    "évaluateur",
    "correcteur",
    "critères",
    "bewerte",
    "bewerter",
    "kriterien",
    "valutatore",
    "avaliador",
    "instrucciones anteriores",
    "оценщик",
    "критерии",
    "评分",
    "指令",
    "採点",
    "審査",
    "基準",
    "채점",
    "기준",
)
MASTER_KEY_REPLIES = frozenset(
    [
        "",
        "thought process",
        "solution",
        "answer",
        "let's solve this problem step by step",
        "let me think step by step",
        "解",
        "かいせつ",
        "null",
    ]
)


def read_as_a_model(text: str) -> str:
    """The text as a model's tokenizer sees it: zero-width and direction characters gone,
    Unicode tag characters decoded to the ASCII they mirror, compatibility forms and
    Cyrillic look-alikes folded, lower-cased."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xE0000 <= code <= 0xE007F:
            out.append(chr(code - 0xE0000))
        elif unicodedata.category(ch) != "Cf":
            out.append(ch)
    folded = unicodedata.normalize("NFKC", "".join(out)).casefold()
    return folded.translate(str.maketrans("аеорсхуіј", "aeopcxyij"))


def gullible_obeys(response: str) -> str | None:
    """What a gullible judge obeys in `response`: the cue it found, or None."""
    text = read_as_a_model(response)
    for cue in GULLIBLE_CUES:
        if cue in text:
            return cue
    bare = re.sub(r"[^\w\s']+", "", text).strip()
    if bare in MASTER_KEY_REPLIES:
        return f"master key {text.strip()[:20]!r}"
    return None


# The judge prompt fences graded text between markers that carry a nonce derived from the
# text itself (see grading.judges.prompts); the simulator reads the blocks the same way.
BLOCK = r"<<<{name} (?P<nonce>[0-9a-f]+)\n(?P<body>.*?)\n{name} (?P=nonce)>>>"


def extract_block(name: str, text: str, start: int = 0) -> tuple[str, int] | None:
    """(body, end offset) of the first block `name` at or after `start`."""
    match = re.compile(BLOCK.format(name=name), re.DOTALL).search(text, start)
    return (match.group("body"), match.end()) if match else None


def extract_response_and_criteria(text: str) -> tuple[str | None, list[tuple[str, str]]]:
    """The fenced response, and the criteria fenced *after* it: like an honest judge, the
    simulator reads the prompt in order, so fences forged inside the response are just text.
    For a step criterion (`STEP_MARK` after the response fence) the response is the last
    assistant turn shown."""
    conversation = extract_block("CONVERSATION", text)
    found = extract_block("RESPONSE", text, conversation[1] if conversation else 0)
    if found is None:
        return None, []
    response, end = found
    if STEP_MARK in text[end:]:
        response = last_assistant_turn(response)
    return response, extract_criteria(text, end)


# What a step criterion's prompt says after the fence (grading.judges.prompts.STEP_MARK; the
# simulator keeps its own copy, as a separate judge would, and a test holds them equal).
STEP_MARK = "judge only the last assistant turn shown"
TURN = re.compile(r"^#\d+ assistant: ", re.M)


def last_assistant_turn(episode: str) -> str:
    """The last assistant turn of an episode rendered for a judge: from its "#N assistant:"
    line to the end (the whole text when there is none)."""
    starts = [m.start() for m in TURN.finditer(episode)]
    return episode[starts[-1] :] if starts else episode


def extract_criteria(text: str, start: int = 0) -> list[tuple[str, str]]:
    """(criterion id, text) pairs of a batched prompt, or one pair for a single criterion."""
    found = extract_block("CRITERIA", text, start)
    if found is not None:
        batch = found[0]
        return [
            (m.group(1), m.group(2).strip())
            for m in re.finditer(r"^\[(\S+)\]\s*(?:\(-?[\d.]+ points?\)\s*)?(.*)$", batch, re.M)
        ]
    found = extract_block("CRITERION", text, start)
    if found is None:
        return []
    return [("", re.sub(r"^\(-?[\d.]+ points?\)\s*", "", found[0].strip()))]


@dataclass
class SimulatorConfig:
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    retry_after_s: float = 1.0
    timeout_s: float = 30.0
    max_concurrency: int = 0  # 0: unlimited; above it the simulator answers 429
    seed: int = 0
    gullible: bool = False  # obey instructions found in the graded text (see module doc)
    # When set, every verdict explains itself with this text: a real judge's explanation is
    # whatever the model wrote, so tests plant hostile markup here to see how Assay shows it.
    explanation: str = ""


@dataclass
class SimulatorStats:
    requests: int = 0
    in_flight: int = 0
    peak_concurrency: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    # The judge's own latency of the latest requests, in ms: from the request line's arrival
    # to the reply written (as a server's access log times a request), so a client's
    # overhead can be measured over what the judge really took, its own HTTP work included.
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=64))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "in_flight": self.in_flight,
                "peak_concurrency": self.peak_concurrency,
                "faults": dict(self.faults),
                "recent_latency_ms": [round(x, 3) for x in self.latencies_ms],
            }


class _Handler(BaseHTTPRequestHandler):
    server: SimulatorServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; with Nagle's algorithm and the client's
    # delayed ACK that adds ~40 ms to every reply on loopback. A real API does not.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def _send_json(self, status: int, payload: object, headers: dict[str, str] | None = None):
        body = json.dumps(payload).encode()
        self._done_in_flight()  # the reply is decided: the request no longer holds a slot
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Assay-Simulator", "1")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        if getattr(self, "_timed", False):
            self._timed = False
            took = 1000 * (time.perf_counter() - self._arrived)
            with self.server.stats.lock:
                self.server.stats.latencies_ms.append(took)

    def parse_request(self) -> bool:
        self._arrived = time.perf_counter()  # the request line is in: the judge's clock starts
        return super().parse_request()

    def do_GET(self) -> None:
        if self.path == "/stats":
            self._send_json(200, self.server.stats.as_dict())
        elif self.path in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "assay-simulator/judge"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/stats/reset":
            self.server.reset()
            self._send_json(200, {"ok": True})
            return
        if self.path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        stats, config = self.server.stats, self.server.config
        with stats.lock:
            stats.requests += 1
            stats.in_flight += 1
            stats.peak_concurrency = max(stats.peak_concurrency, stats.in_flight)
            over_capacity = config.max_concurrency and stats.in_flight > config.max_concurrency
            fault = self.server.draw_fault()
            if over_capacity:
                fault = "429"
            if fault:
                stats.faults[fault] = stats.faults.get(fault, 0) + 1
        self._counted = True
        try:
            self._complete(raw, fault)
        finally:
            self._done_in_flight()

    def _done_in_flight(self) -> None:
        # Counted down before the reply is written, so a client that sends its next request
        # the moment it reads this reply is never seen as one request too many.
        if getattr(self, "_counted", False):
            self._counted = False
            self._timed = True  # the reply, once written, ends this request's latency
            with self.server.stats.lock:
                self.server.stats.in_flight -= 1

    def _complete(self, raw: bytes, fault: str | None) -> None:
        config = self.server.config
        if fault == "429":
            self._send_json(
                429,
                {"error": {"message": "simulated rate limit", "type": "rate_limit"}},
                {"Retry-After": f"{config.retry_after_s:g}"},
            )
            return
        try:
            request = json.loads(raw)
            messages = request["messages"]
        except (ValueError, KeyError, TypeError):
            self._send_json(400, {"error": {"message": "body must be JSON with 'messages'"}})
            return
        time.sleep(config.latency_ms / 1000)
        if fault == "500":
            self._send_json(500, {"error": {"message": "simulated server error"}})
            return
        if fault == "timeout":
            time.sleep(config.timeout_s)
        prompt, images = prompt_of(messages)
        self.server.received.append(messages)
        content = self.server.answer(prompt, images)
        if config.explanation:
            content = _explained(content, config.explanation)
        if fault == "malformed":
            content = content[: len(content) // 2] + " ... I think it is met"
        model = f"assay-simulator/{request.get('model', 'judge')}"
        prompt_tokens = max(1, len(prompt) // 4)
        completion_tokens = max(1, len(content) // 4)
        cached_tokens = self.server.cached_prefix(request.get("prompt_cache_key"), prompt) // 4
        self._send_json(
            200,
            {
                "id": f"simcmpl-{self.server.stats.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": cached_tokens},
                },
            },
        )


def _explained(content: str, explanation: str) -> str:
    """The reply with every verdict's explanation replaced by `explanation`."""
    reply = json.loads(content)
    for verdict in [reply, *reply.get("verdicts", [])]:
        if "explanation" in verdict:
            verdict["explanation"] = explanation
    return json.dumps(reply)


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, host: str, port: int, config: SimulatorConfig):
        super().__init__((host, port), _Handler)
        self.config = config
        self.stats = SimulatorStats()
        self._rng = random.Random(config.seed)  # noqa: S311 - fault draws, not secrets
        self._prefixes: dict[str, str] = {}
        # The messages of the latest requests, as received: what a judge really reads.
        self.received: deque[list] = deque(maxlen=1000)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reset(self) -> None:
        with self.stats.lock:
            self.stats.requests = 0
            self.stats.peak_concurrency = self.stats.in_flight
            self.stats.faults = {}
            self.stats.latencies_ms.clear()
            self.received.clear()

    def cached_prefix(self, cache_key: object, prompt: str) -> int:
        """Like a provider's prompt cache: characters of this prompt that repeat the start of
        the last prompt sent with the same prompt_cache_key (whole 128-character blocks)."""
        if not isinstance(cache_key, str) or not cache_key:
            return 0
        with self.stats.lock:
            last = self._prefixes.get(cache_key)
            if len(self._prefixes) > 100_000:
                self._prefixes.clear()
            self._prefixes[cache_key] = prompt
        if last is None:
            return 0
        # Block by block, each compared in C: a character loop in Python took a third of a
        # millisecond of the simulator's GIL per call, charged only to clients that send a key.
        n, end = 0, min(len(last), len(prompt))
        while n + 128 <= end and last[n : n + 128] == prompt[n : n + 128]:
            n += 128
        return n

    def draw_fault(self) -> str | None:
        """Called with the stats lock held, so draws are in request order."""
        if self.config.fault_rate and self._rng.random() < self.config.fault_rate:
            return self._rng.choice(self.config.faults)
        return None

    def answer(self, prompt: str, images: list[str] | None = None) -> str:
        response, criteria = extract_response_and_criteria(prompt)
        if response is None or not criteria:
            return json.dumps(
                {"criteria_met": False, "explanation": "Simulated: no fenced response found."}
            )
        obeyed = gullible_obeys(response) if self.config.gullible else None
        if obeyed is not None:
            return self._obey(criteria, obeyed)
        images = images or []
        with_images = bool(images) or "[image: " in prompt
        colours = [image_colour(uri) for uri in images] if with_images else []

        def binary(text: str) -> tuple[bool, str]:
            if with_images and is_visual(text):
                return visual_verdict(text, response, colours)
            return simulated_verdict(text, response)

        if len(criteria) == 1 and criteria[0][0] == "":
            scale = SCALE_LINE.search(criteria[0][1])
            if scale:
                first_line = criteria[0][1].split("\n", 1)[0]
                level, why = simulated_scale(first_line, response, int(scale.group(1)))
                return json.dumps({"score": level, "explanation": why})
            met, why = binary(criteria[0][1])
            return json.dumps({"criteria_met": met, "explanation": why})
        verdicts, levels = [], []
        for criterion_id, text in criteria:
            scale = SCALE_LINE.search(text)
            if scale and BATCH_SCALE_MARK in text:
                own = text.split(BATCH_SCALE_MARK, 1)[0]
                level, why = simulated_scale(own, response, int(scale.group(1)))
                levels.append({"id": criterion_id, "level": level, "explanation": why})
            else:
                met, why = binary(text)
                verdicts.append({"id": criterion_id, "criteria_met": met, "explanation": why})
        return json.dumps(_batch_reply(verdicts, levels))

    def _obey(self, criteria: list[tuple[str, str]], cue: str) -> str:
        why = f"Simulated gullible judge: obeyed the response ({cue})."
        if len(criteria) == 1 and criteria[0][0] == "":
            scale = SCALE_LINE.search(criteria[0][1])
            if scale:
                return json.dumps({"score": int(scale.group(1)), "explanation": why})
            return json.dumps({"criteria_met": True, "explanation": why})
        verdicts, levels = [], []
        for criterion_id, text in criteria:
            scale = SCALE_LINE.search(text)
            if scale and BATCH_SCALE_MARK in text:
                levels.append(
                    {"id": criterion_id, "level": int(scale.group(1)), "explanation": why}
                )
            else:
                verdicts.append({"id": criterion_id, "criteria_met": True, "explanation": why})
        return json.dumps(_batch_reply(verdicts, levels))

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (its timeout) closes the socket under a slow reply: not news.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True, name="judge-simulator")
        thread.start()
        return thread
