"""Assay's reward function for RL trainers: one file, standard library only.

Copy it into your trainer (or `pip install` Assay) and point it at a suite: one URL grades
every task of the suite, each response by its task's pinned grader:

    ASSAY_SUITE_URL=https://assay.example.com/api/suites/7/score/  ASSAY_TOKEN=...

(`.../api/suites/7/versions/3/score/` pins suite version 3; the bare suite URL grades with its
newest version, and each reply names the version it used: `AssayReward.last_version`.) A
trainer then sends (task external id, responses) pairs, mixed tasks in one request, up to 256
responses a request (larger batches are split). Or point it at one published grader, as
before:

    ASSAY_URL=https://assay.example.com  ASSAY_TOKEN=...  ASSAY_GRADER=<grader hash>

Both call endpoints that grade through the same engine, cache and judge limits as grading
runs, and return one float per completion (the clipped score by default; ASSAY_REWARD=raw for
the raw HealthBench score, which pitfalls can push below 0). A completion whose grading failed
gets ASSAY_ERROR_REWARD (default 0.0) and a warning, never a made-up score. The token needs the
`grade` scope.

verl: the dataset's `reward_model.ground_truth` is the task's external id in Assay.
    One sample at a time (the naive reward manager):
        custom_reward_function.path=.../reward_client.py custom_reward_function.name=compute_score
    The whole batch in one request per 256 responses (a suite URL grades mixed tasks at once):
        reward_model.reward_manager=batch custom_reward_function.path=.../reward_client.py \\
        custom_reward_function.name=compute_score_batch
TRL (GRPOTrainer(reward_funcs=[reward_func])): give the dataset a `task` column (the task's
    external id): completions of the whole batch are graded in one suite request. Without it,
    with a grader, prompts (chat messages or strings) are the conversation graded.
OpenRLHF (--remote_rm_url pointing at this file): reward_func(queries, prompts, labels), the
    labels being task external ids.

Multi-turn rollouts (agents with tools): a response may be the rollout's chat messages (the
list TRL's multi-turn training gives as a conversational completion; assistant turns with
`tool_calls`, `tool` messages with `tool_call_id`), or {"messages": [...], "final_state":
{...}} with the environment's state after it. Outcome criteria grade its last assistant text;
trajectory and step criteria the whole episode. A completion that is one plain assistant
message is sent as its text, as before.
    TRL: completions in the conversational format are sent as rollouts by reward_func.
    verl (agent loop): set the rollout's messages (and the final state, if any) as
    output.extra_fields["messages"] (and ["final_state"]) in your agent loop. verl hands an
    agent loop's extra_fields to the reward loop as "tool_extra_fields", whose reward
    managers merge them into the sample's extra_info; compute_score then sends them as the
    episode instead of solution_str. Values that arrive as NumPy arrays (a dataset read
    through pandas, verl's object arrays) are sent as plain lists.
Per-step (process) rewards come back beside each score: `AssayReward.results(...)` and
`results_items(...)` return the endpoint's result objects, whose "steps" list holds
{"step", "criterion", "outcome", "reward"}: `step_rewards(result)` gives {step: reward},
summed over the step criteria.

Images and files (a chart the answer must read, a deliverable the model wrote: PNG, JPEG,
WebP, PDF, DOCX, XLSX, PPTX, CSV) travel inside a message's content as parts, inline as base64
data: URIs; `image_part` and `file_part` build them from bytes or a path. Each file may be at
most the server's ASSAY_FILE_MAX_BYTES (20 MB), a request's body ASSAY_REWARD_MAX_BODY_BYTES
(32 MB: a larger batch of files is a 413, so send fewer responses a request). Assay stores each
file once by its SHA-256, so the same image sent again hits the judge's cache; URLs are never
fetched.

    deliverable = [{"role": "assistant", "content": [
        {"type": "text", "text": "The debt schedule is attached."},
        file_part("out/schedule.xlsx")]}]
    reward.score([deliverable], task="bank-0003")
    chart = [{"role": "assistant", "content": [image_part(png_bytes), "Revenue grew 12%."]}]

In code:

    from reward_client import AssayReward
    reward = AssayReward(suite_url="https://assay.example.com/api/suites/7/score/", token=key)
    reward.score_items([("hb-0001", ["answer a", "answer b"]), ("hb-0417", ["answer c"])])
    # -> [[0.8, 0.3], [1.0]]
    rollout = [{"role": "assistant", "content": "", "tool_calls": [...]},
               {"role": "tool", "tool_call_id": "c1", "content": "..."},
               {"role": "assistant", "content": "Refunded."}]
    [result] = reward.results([rollout], task="refund-0007")
    result["clipped"], step_rewards(result)   # -> 0.75, {0: 0.25, 2: 0.5}
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import urllib.request
import warnings
from collections import OrderedDict
from pathlib import Path

MAX_BATCH = 256


class AssayRewardError(RuntimeError):
    pass


class AssayReward:
    def __init__(
        self,
        base_url: str | None = None,
        grader: str | None = None,
        token: str | None = None,
        *,
        suite_url: str | None = None,
        judge: int | None = None,
        mode: str | None = None,
        raw: bool | None = None,
        error_reward: float | None = None,
        timeout: float = 300.0,
    ):
        """A suite's score URL (`suite_url`), or Assay's base URL and a grader hash; from the
        environment, ASSAY_SUITE_URL when set, else ASSAY_URL and ASSAY_GRADER."""
        self.suite_url = suite_url or (
            None if (base_url or grader) else os.environ.get("ASSAY_SUITE_URL")
        )
        if self.suite_url:
            self.suite_url = self.suite_url.rstrip("/") + "/"
            self.base_url, self.grader = None, None
        else:
            self.base_url = (base_url or os.environ["ASSAY_URL"]).rstrip("/")
            self.grader = grader or os.environ["ASSAY_GRADER"]
        self.token = token or os.environ["ASSAY_TOKEN"]
        self.judge = judge
        self.mode = mode
        self.raw = os.environ.get("ASSAY_REWARD") == "raw" if raw is None else raw
        if error_reward is None:
            error_reward = float(os.environ.get("ASSAY_ERROR_REWARD", "0"))
        self.error_reward = error_reward
        self.timeout = timeout
        # (number, content hash) of the suite version the last suite reply graded with.
        self.last_version: tuple[int, str] | None = None

    def _post(self, url: str, body: dict):
        if self.judge:
            body["judge"] = self.judge
        if self.mode:
            body["mode"] = self.mode
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own Assay
            url,
            data=json.dumps(body, default=_plain).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise AssayRewardError(f"Assay answered HTTP {exc.code}: {detail}") from None

    def _value(self, result: dict) -> float:
        value = result["score"] if self.raw else result["clipped"]
        if value is None:
            errors = [v["error"] for v in result["verdicts"] if v.get("error")]
            warnings.warn(f"Assay could not grade a completion: {errors[:3]}", stacklevel=3)
            value = self.error_reward
        return float(value)

    def score(self, responses: list, *, task: str | None = None, messages=None) -> list[float]:
        """Rewards for `responses` (texts or rollouts) to one prompt: a task external id (a
        suite needs one), or with a grader, chat messages."""
        return [self._value(r) for r in self.results(responses, task=task, messages=messages)]

    def results(self, responses: list, *, task: str | None = None, messages=None) -> list[dict]:
        """The endpoint's result for each response (score, clipped, verdicts, steps)."""
        responses = [_response(r) for r in responses]
        if self.suite_url:
            if not task:
                raise AssayRewardError("A suite grades by task: pass task=<external id>.")
            return self.results_items([(task, responses)])[0]
        results: list[dict] = []
        for start in range(0, len(responses), MAX_BATCH):
            body: dict = {"responses": responses[start : start + MAX_BATCH]}
            body.update({"task": task} if task else {"messages": messages})
            url = f"{self.base_url}/api/graders/{self.grader}/score/"
            results.extend(self._post(url, body))
        return results

    def score_items(self, items) -> list[list[float]]:
        """Rewards for (task external id, responses) pairs, mixed tasks, per pair in order.
        With a suite URL, one request per 256 responses grades them all at once; with a
        grader, one request per pair (every task must be graded by that grader)."""
        return [[self._value(r) for r in item] for item in self.results_items(items)]

    def results_items(self, items) -> list[list[dict]]:
        """The endpoint's results for (task external id, responses) pairs, as score_items."""
        items = [(str(task), [_response(r) for r in responses]) for task, responses in items]
        if not self.suite_url:
            return [self.results(responses, task=task) for task, responses in items]
        rewards: list[list[dict]] = [[] for _ in items]
        # Pack the pairs into requests of at most MAX_BATCH responses, splitting a pair
        # across two requests when it does not fit.
        batches: list[list[tuple[int, str, list[str]]]] = [[]]
        room = MAX_BATCH
        for i, (task, responses) in enumerate(items):
            start = 0
            while start < len(responses):
                if room == 0:
                    batches.append([])
                    room = MAX_BATCH
                part = responses[start : start + room]
                batches[-1].append((i, task, part))
                room -= len(part)
                start += len(part)
        for batch in batches:
            if not batch:
                continue
            body = {"items": [{"task": task, "responses": part} for _, task, part in batch]}
            reply = self._post(self.suite_url, body)
            self.last_version = (reply["version"], reply["content_hash"])
            for (i, _, _), item in zip(batch, reply["items"], strict=True):
                rewards[i].extend(item["results"])
        return rewards

    def score_pairs(self, tasks: list[str], responses: list) -> list[float]:
        """One reward per (task, response), in order: responses to the same task are sent
        together, and with a suite URL every task in one request per 256 responses."""
        groups: OrderedDict[str, list[int]] = OrderedDict()
        for i, task in enumerate(tasks):
            groups.setdefault(str(task), []).append(i)
        scored = self.score_items(
            (task, [responses[i] for i in idx]) for task, idx in groups.items()
        )
        rewards = [0.0] * len(responses)
        for indices, values in zip(groups.values(), scored, strict=True):
            for i, value in zip(indices, values, strict=True):
                rewards[i] = value
        return rewards


def _text(item) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, list):  # chat messages: the assistant's last turn
        return str(item[-1].get("content", "")) if item else ""
    return str(item)


def _response(item):
    """What the endpoint is sent for a completion: a text as is; a rollout (chat messages, or
    {"messages", "final_state"}) as an episode, unless it is one plain assistant message,
    which is sent as its text."""
    if isinstance(item, dict) and "messages" in item:
        return item
    if isinstance(item, list | tuple):
        messages = [dict(m) for m in item]
        only = messages[0] if len(messages) == 1 else None
        if (
            only is not None
            and only.get("role") == "assistant"
            and not only.get("tool_calls")
            and not isinstance(only.get("content"), list)  # parts: images, files
        ):
            return _text(messages)
        return {"messages": messages} if messages else ""
    return item


# The media type a data: URI declares (Assay sniffs the bytes anyway and never trusts it).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"%PDF-", "application/pdf"),
)


def _file(source, filename: str | None) -> tuple[bytes, str, str]:
    """(bytes, name, media type) of `source`: bytes, or a path (str or Path) to read."""
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), filename or ""
    else:
        path = Path(source)
        data, name = path.read_bytes(), filename or path.name
    mime = next((m for magic, m in _MAGIC if data.startswith(magic)), "")
    if not mime and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    mime = mime or (mimetypes.guess_type(name)[0] if name else None) or "application/octet-stream"
    return data, name, mime


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_part(source, *, filename: str | None = None) -> dict:
    """An image content part (PNG, JPEG or WebP) from its bytes or a path, inline as a base64
    data: URI, as the reward endpoints take it."""
    data, name, mime = _file(source, filename)
    part: dict = {"type": "image_url", "image_url": {"url": _data_uri(data, mime)}}
    if name:
        part["file"] = {"filename": name}
    return part


def file_part(source, *, filename: str | None = None) -> dict:
    """A file content part (a deliverable: PDF, DOCX, XLSX, PPTX, CSV) from its bytes or a
    path, inline as a base64 data: URI; give `filename` for bytes, the name the judge reads."""
    data, name, mime = _file(source, filename)
    return {
        "type": "file",
        "file": {"file_data": _data_uri(data, mime), "filename": name or "file"},
    }


def step_rewards(result: dict) -> dict[int, float]:
    """{step: reward} of one endpoint result, summed over its step criteria (steps in error
    left out)."""
    out: dict[int, float] = {}
    for step in result.get("steps") or []:
        if step["reward"] is not None:
            out[step["step"]] = out.get(step["step"], 0.0) + step["reward"]
    return out


def _messages(prompt) -> list[dict]:
    if isinstance(prompt, list):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    return [{"role": "user", "content": str(prompt)}]


_default: AssayReward | None = None


def _client() -> AssayReward:
    global _default
    if _default is None:
        _default = AssayReward()
    return _default


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> float:
    """verl's custom reward function: ground_truth is the Assay task's external id. A
    multi-turn rollout whose messages are in extra_info["messages"] (with its
    extra_info["final_state"], if any) is graded as that episode."""
    return _client().score([_rollout(solution_str, extra_info)], task=str(ground_truth))[0]


def _plain(value):
    """JSON for what json cannot write itself: a NumPy array or scalar (verl keeps a batch's
    non-tensor fields in object arrays; pandas reads a list column as arrays) as its list or
    number."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _rollout(solution_str, extra_info):
    """The episode of a verl sample when its extra_info carries the rollout's messages (a
    list, or a NumPy array of them: never tested for truth, which an array refuses)."""
    info = extra_info if isinstance(extra_info, dict) else {}
    messages = info.get("messages")
    if messages is None or len(messages) == 0:
        return solution_str
    episode: dict = {"messages": list(messages)}
    if info.get("final_state") is not None:
        episode["final_state"] = info["final_state"]
    return episode


def compute_score_batch(
    data_sources=None, solution_strs=(), ground_truths=(), extra_infos=None, **kwargs
) -> list[float]:
    """verl's batch reward function (reward_model.reward_manager=batch): the whole batch at
    once, ground truths being the tasks' external ids."""
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    return _client().score_pairs(
        [str(g) for g in ground_truths],
        [_rollout(str(s), info) for s, info in zip(solution_strs, infos, strict=True)],
    )


def reward_func(prompts=None, completions=None, queries=None, labels=None, task=None, **kwargs):
    """TRL's reward function (prompts, completions, and the dataset's `task` column when it has
    one), or OpenRLHF's (queries, prompts, labels).

    With task ids, the batch is graded by task (in one suite request per 256 responses); else
    completions that share a prompt are graded in one call."""
    if completions is None:  # OpenRLHF: queries are prompt + response; labels are task ids
        responses = [
            query[len(prompt) :] if query.startswith(prompt) else query
            for query, prompt in zip(queries or [], prompts or [], strict=True)
        ]
        return _client().score_pairs([str(label) for label in labels or []], responses)
    if task is not None:
        return _client().score_pairs([str(t) for t in task], [_response(c) for c in completions])
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for i, prompt in enumerate(prompts):
        groups.setdefault(json.dumps(_messages(prompt), sort_keys=True), []).append(i)
    rewards = [0.0] * len(completions)
    for key, indices in groups.items():
        scores = _client().score(
            [_response(completions[i]) for i in indices], messages=json.loads(key)
        )
        for i, value in zip(indices, scores, strict=True):
            rewards[i] = value
    return rewards
