"""Assay's reward function for RL trainers: one file, standard library only.

Copy it into your trainer (or `pip install` Assay) and point it at a published grader:

    ASSAY_URL=https://assay.example.com  ASSAY_TOKEN=...  ASSAY_GRADER=<grader hash>

It calls `POST /api/graders/{hash}/score`, which grades through the same engine, cache and
judge limits as grading runs, and returns one float per completion (the clipped score by
default; ASSAY_REWARD=raw for the raw HealthBench score, which pitfalls can push below 0).
A completion whose grading failed gets ASSAY_ERROR_REWARD (default 0.0) and a warning, never a
made-up score.

verl (custom_reward_function.path=.../reward_client.py, name=compute_score):
    ground_truth is the task's external id in Assay.
TRL (GRPOTrainer(reward_funcs=[reward_func])):
    prompts are chat messages or strings; completions likewise.
OpenRLHF (--remote_rm_url pointing at this file): reward_func(queries, prompts, labels).
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
        judge: int | None = None,
        mode: str | None = None,
        raw: bool | None = None,
        error_reward: float | None = None,
        timeout: float = 300.0,
    ):
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

    def _post(self, body: dict) -> list[dict]:
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own Assay
            f"{self.base_url}/api/graders/{self.grader}/score/",
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

    def score(self, responses: list[str], *, task: str | None = None, messages=None) -> list[float]:
        """Rewards for `responses` to one prompt (a task external id, or chat messages)."""
        rewards: list[float] = []
        for start in range(0, len(responses), MAX_BATCH):
            body: dict = {"responses": responses[start : start + MAX_BATCH]}
            body.update({"task": task} if task else {"messages": messages})
            if self.judge:
                body["judge"] = self.judge
            if self.mode:
                body["mode"] = self.mode
            for result in self._post(body):
                value = result["score"] if self.raw else result["clipped"]
                if value is None:
                    errors = [v["error"] for v in result["verdicts"] if v.get("error")]
                    warnings.warn(f"Assay could not grade a completion: {errors[:3]}", stacklevel=2)
                    value = self.error_reward
                rewards.append(float(value))
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


def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
    """verl's custom reward function: ground_truth is the Assay task's external id."""
    return _client().score([solution_str], task=str(ground_truth))[0]


def reward_func(prompts=None, completions=None, queries=None, labels=None, **kwargs):
    """TRL's reward function (prompts, completions), or OpenRLHF's (queries, prompts, labels).

    Completions that share a prompt are graded in one call."""
    if completions is None:  # OpenRLHF: queries are prompt + response; labels are task ids
        rewards = []
        for query, prompt, label in zip(queries or [], prompts or [], labels or [], strict=True):
            response = query[len(prompt) :] if query.startswith(prompt) else query
            rewards.append(_client().score([response], task=str(label))[0])
        return rewards
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for i, prompt in enumerate(prompts):
        groups.setdefault(json.dumps(_messages(prompt), sort_keys=True), []).append(i)
    rewards = [0.0] * len(completions)
    for key, indices in groups.items():
        scores = _client().score([_text(completions[i]) for i in indices], messages=json.loads(key))
        for i, value in zip(indices, scores, strict=True):
            rewards[i] = value
    return rewards
