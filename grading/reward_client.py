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

In code:

    from reward_client import AssayReward
    reward = AssayReward(suite_url="https://assay.example.com/api/suites/7/score/", token=key)
    reward.score_items([("hb-0001", ["answer a", "answer b"]), ("hb-0417", ["answer c"])])
    # -> [[0.8, 0.3], [1.0]]
"""

from __future__ import annotations

import json
import os
import urllib.request
import warnings
from collections import OrderedDict

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
            data=json.dumps(body).encode(),
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

    def score(self, responses: list[str], *, task: str | None = None, messages=None) -> list[float]:
        """Rewards for `responses` to one prompt: a task external id (a suite needs one), or
        with a grader, chat messages."""
        if self.suite_url:
            if not task:
                raise AssayRewardError("A suite grades by task: pass task=<external id>.")
            return self.score_items([(task, responses)])[0]
        rewards: list[float] = []
        for start in range(0, len(responses), MAX_BATCH):
            body: dict = {"responses": responses[start : start + MAX_BATCH]}
            body.update({"task": task} if task else {"messages": messages})
            url = f"{self.base_url}/api/graders/{self.grader}/score/"
            rewards.extend(self._value(result) for result in self._post(url, body))
        return rewards

    def score_items(self, items) -> list[list[float]]:
        """Rewards for (task external id, responses) pairs, mixed tasks, per pair in order.
        With a suite URL, one request per 256 responses grades them all at once; with a
        grader, one request per pair (every task must be graded by that grader)."""
        items = [(str(task), list(responses)) for task, responses in items]
        if not self.suite_url:
            return [self.score(responses, task=task) for task, responses in items]
        rewards: list[list[float]] = [[] for _ in items]
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
                rewards[i].extend(self._value(result) for result in item["results"])
        return rewards

    def score_pairs(self, tasks: list[str], responses: list[str]) -> list[float]:
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
    """verl's custom reward function: ground_truth is the Assay task's external id."""
    return _client().score([solution_str], task=str(ground_truth))[0]


def compute_score_batch(
    data_sources=None, solution_strs=(), ground_truths=(), extra_infos=None, **kwargs
) -> list[float]:
    """verl's batch reward function (reward_model.reward_manager=batch): the whole batch at
    once, ground truths being the tasks' external ids."""
    return _client().score_pairs([str(g) for g in ground_truths], [str(s) for s in solution_strs])


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
        return _client().score_pairs([str(t) for t in task], [_text(c) for c in completions])
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for i, prompt in enumerate(prompts):
        groups.setdefault(json.dumps(_messages(prompt), sort_keys=True), []).append(i)
    rewards = [0.0] * len(completions)
    for key, indices in groups.items():
        scores = _client().score([_text(completions[i]) for i in indices], messages=json.loads(key))
        for i, value in zip(indices, scores, strict=True):
            rewards[i] = value
    return rewards
