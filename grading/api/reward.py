"""The reward endpoint: synchronous scores for RL trainers, by grader or by suite (version),
through the same engine, cache and limits as runs. Its cache and cost rows are written after
the reply is sent (AFTER_REPLY counts them).
"""

from __future__ import annotations

import logging
import threading

from django.db import transaction
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.content.episode import ContentError, Episode
from annotation.content.intake import RequestIntake
from grading import selectors, services
from grading.models import GradingRun
from rubrics.api.common import HASH_RULE, ErrorDetailSerializer, responses, service_errors
from rubrics.permissions import Perm
from rubrics.selectors import grader_to_score, suite_to_score, task_for

logger = logging.getLogger(__name__)


REWARD_BUSY = OpenApiResponse(
    ErrorDetailSerializer,
    description="This server process already scores as many reward requests as it may at once "
    "(ASSAY_REWARD_MAX_CONCURRENT): retry after `Retry-After` seconds. Nothing was graded.",
)
MAX_REWARD_RESPONSES = 256

# An episode as the reward endpoints take it (annotation.content.episode validates it).
EPISODE_PART_SCHEMA = {
    "type": "object",
    "description": "A part of a message's content: text, an image or a file. An image or a file "
    "comes inline as a base64 data: URI (data:image/png;base64,...), or as sha256:<hash> of a "
    "file the project already holds; it is sniffed from its bytes (PNG, JPEG, WebP; PDF, DOCX, "
    "XLSX, PPTX, CSV; never SVG or HTML), at most ASSAY_FILE_MAX_BYTES, and stored by its "
    "SHA-256. URLs are never fetched, and bundle paths are refused (a request has no bundle). "
    "grading/reward_client.py's image_part and file_part build these.",
    "properties": {
        "type": {"type": "string", "enum": ["text", "image_url", "file"]},
        "text": {"type": "string", "description": "A text part's text."},
        "image_url": {
            "type": "object",
            "properties": {"url": {"type": "string", "description": "data: URI or sha256:<hash>"}},
            "required": ["url"],
        },
        "file": {
            "type": "object",
            "properties": {
                "file_data": {"type": "string", "description": "A base64 data: URI."},
                "sha256": {"type": "string", "description": "Or a held file's hash."},
                "filename": {"type": "string", "description": "The name shown and judged."},
            },
        },
    },
    "required": ["type"],
}
EPISODE_MESSAGE_SCHEMA = {
    "type": "object",
    "description": "A chat message in the OpenAI format.",
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": EPISODE_PART_SCHEMA}],
            "nullable": True,
        },
        "tool_calls": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string", "enum": ["function"]},
                    "function": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "arguments": {
                                "description": "A JSON object, or a string holding one.",
                                "oneOf": [{"type": "string"}, {"type": "object"}],
                            },
                        },
                        "required": ["name"],
                    },
                },
                "required": ["id", "function"],
            },
        },
        "tool_call_id": {"type": "string", "description": "A tool message's call."},
        "name": {"type": "string"},
        "reasoning": {"type": "string"},
    },
    "required": ["role"],
}
EPISODE_SCHEMA = {
    "type": "object",
    "description": "An agent's episode: its messages, and the environment's final state.",
    "properties": {
        "messages": {"type": "array", "items": EPISODE_MESSAGE_SCHEMA, "minItems": 1},
        "final_state": {"description": "Any JSON: the environment after the episode."},
        "metadata": {"type": "object"},
    },
    "required": ["messages"],
}


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            EPISODE_SCHEMA,
            {"type": "array", "items": EPISODE_MESSAGE_SCHEMA, "minItems": 1},
        ],
        "nullable": True,
        "description": "A model output: a text (empty, blank or null: scored without a judge "
        "call, its judged criteria not met), or a multi-turn rollout: a list of chat messages "
        "with tool calls and tool results, or {messages, final_state, metadata}. Outcome "
        "criteria grade its last assistant text; trajectory and step criteria the episode. "
        "A message's content may hold image and file parts (PNG, JPEG, WebP, PDF, DOCX, XLSX, "
        "PPTX, CSV) as base64 data: URIs, each at most ASSAY_FILE_MAX_BYTES, or as "
        "sha256:<hash> of a file the project holds; URLs and bundle paths are refused.",
    }
)
class RewardResponseField(serializers.Field):
    """A text, or an episode validated by annotation.content.episode (errors name the field
    path inside the response, e.g. messages[3].tool_calls[0].function.arguments)."""

    def __init__(self, **kwargs):
        super().__init__(allow_null=True, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str):
            return data
        if isinstance(data, dict | list):
            try:
                # Image and file parts are stored in the project by the view's intake
                # (context "files"), once the caller's role is checked.
                return Episode.parse(data, files=self.context.get("files"))
            except ContentError as exc:
                raise serializers.ValidationError(str(exc)) from None
        raise serializers.ValidationError(
            "A response is a text, a list of chat messages, or an object with messages "
            "(and final_state, metadata)."
        )

    def to_representation(self, value):
        return value.as_json() if isinstance(value, Episode) else value


class RewardStepSerializer(serializers.Serializer):
    step = serializers.IntegerField(
        help_text="The step: the index of its assistant message in the episode's messages "
        "(0-based)."
    )
    criterion = serializers.IntegerField(
        source="criterion_id", help_text="The step criterion that produced this reward."
    )
    outcome = serializers.CharField(help_text="met, unmet, na or error, at this step.")
    reward = serializers.FloatField(
        allow_null=True,
        help_text="The criterion's points times the step's credit (1 met, a scale's value, 0 "
        "not met) over the rubric's sum of positive points: a pitfall met at a step is "
        "negative. Null on an error.",
    )


class RewardScoreApi(APIView):
    """Synchronous scores for RL trainers, through the same engine, cache and limits as runs."""

    @extend_schema_serializer(component_name="RewardRequest")
    class InputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="RewardMessage")
        class MessageSerializer(serializers.Serializer):
            # A plain string: a second enum named "role" would collide with project roles.
            role = serializers.CharField(help_text="system, developer, user or assistant.")
            content = serializers.CharField(allow_blank=True, trim_whitespace=False)

            def validate_role(self, value: str) -> str:
                if value not in ("system", "developer", "user", "assistant"):
                    raise serializers.ValidationError("system, developer, user or assistant.")
                return value

        task = serializers.CharField(
            required=False, help_text="A task's external id (its messages are the prompt)."
        )
        messages = MessageSerializer(many=True, required=False, help_text="Or the prompt.")
        responses = serializers.ListField(
            child=RewardResponseField(),
            min_length=1,
            max_length=MAX_REWARD_RESPONSES,
            help_text="Model outputs: texts or episodes. An empty, blank or null one is scored "
            "without a judge call: its judged criteria are not met. A bad episode is a 400 "
            "naming the response's index and the field inside it.",
        )
        judge = serializers.IntegerField(
            min_value=1, required=False, help_text="A judge's id; default: the project's first."
        )
        mode = serializers.ChoiceField(choices=GradingRun.Mode.choices, required=False)

        def validate(self, attrs):
            if bool(attrs.get("task")) == bool(attrs.get("messages")):
                raise serializers.ValidationError("Give either task or messages.")
            return attrs

    @extend_schema_serializer(component_name="RewardResult")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="RewardVerdict")
        class VerdictSerializer(serializers.Serializer):
            criterion = serializers.IntegerField(source="criterion_id")
            outcome = serializers.CharField(help_text="met, unmet or error.")
            value = serializers.FloatField(allow_null=True)
            explanation = serializers.CharField()
            error = serializers.CharField(
                help_text="For an error, '<reason>: <what went wrong>' (unparseable: the "
                "judge's reply could not be read as a verdict; timeout, rate_limited, "
                "http_500, ...); empty otherwise. A judge's reply never makes this endpoint "
                "fail: it answers 200 with the error here and a null score."
            )
            cached = serializers.BooleanField()

        score = serializers.FloatField(allow_null=True, help_text="Raw; null on an error.")
        clipped = serializers.FloatField(allow_null=True)
        gated = serializers.BooleanField(
            help_text="A gate criterion was not met: the score is capped at min(score, 0)."
        )
        gated_by = serializers.ListField(
            child=serializers.IntegerField(),
            help_text="Ids of the gate criteria not met, in rubric order; empty when not gated.",
        )
        verdicts = VerdictSerializer(many=True)
        flags = serializers.ListField(
            child=serializers.CharField(),
            help_text="Why the response looks aimed at its grader (instructions to the grader, "
            "forged verdicts, fake fences, master-key replies); empty when nothing was found. "
            "The score is not changed.",
        )
        steps = RewardStepSerializer(
            many=True,
            help_text="Per-step (process) rewards: each step criterion's verdict at each step "
            "of an episode, by step then rubric order. Its verdict on the whole response (by "
            "its step rule: all, share or any) is in verdicts and the score. Empty for a text "
            "response or a rubric without step criteria.",
        )

    @extend_schema(
        tags=["grading"],
        summary="Score 1..256 responses now (reward endpoint for RL trainers)",
        description=HASH_RULE,
        request=InputSerializer,
        responses={
            **responses({200: OutputSerializer(many=True)}, 400, 403, 404),
            503: REWARD_BUSY,
        },
    )
    def post(self, request: Request, grader_hash: str) -> Response:
        with service_errors():  # a malformed, short or ambiguous hash prefix: 400
            grader, project, task = grader_to_score(request.user, grader_hash, Perm.RUN_GRADING)
        data = self.InputSerializer(data=request.data, context={"files": reward_intake(project)})
        valid_with_files(data)
        judge = selectors.project_judge(project, data.validated_data.get("judge"))
        if judge is None:
            raise ValidationError({"judge": ["No such judge in this grader's project."]})
        if data.validated_data.get("task"):
            # The rubric's task, read with the grader, is usually the one asked for.
            if task is None or task.external_id != data.validated_data["task"]:
                task = task_for(
                    request.user, project, data.validated_data["task"], Perm.RUN_GRADING
                )
            messages = task.messages
        else:
            messages = [dict(m) for m in data.validated_data["messages"]]
        try:
            (results,), store = services.reward_score(
                items=[services.RewardItem(grader, messages, data.validated_data["responses"])],
                judge=judge,
                mode=data.validated_data.get("mode", GradingRun.Mode.PER_CRITERION),
            )
        except services.RewardBusy as exc:
            return _busy(exc)
        return _ThenResponse([_reward_out(r) for r in results], then=store)


def reward_intake(project) -> RequestIntake:
    return RequestIntake(project, door="the reward endpoint")


def valid_with_files(data: serializers.Serializer) -> None:
    """Validate a reward request whose episodes may carry files: each is stored as it is read;
    a 400 anywhere in the request keeps none of the project's new file rows."""
    with transaction.atomic():
        data.is_valid(raise_exception=True)


def _float(value) -> float | None:
    return None if value is None else float(value)


def _reward_out(reward: services.Reward) -> dict:
    """One response's score, as both reward endpoints answer it: what
    RewardScoreApi.OutputSerializer (RewardResult, the schema) makes of it, built directly.
    A trainer waits for this on every request, and DRF's serializers, made afresh for each
    reply and reading each of 20 verdicts field by field, took over a millisecond of it;
    tests/test_reward_endpoint.py holds the two to the same output."""
    figures = reward.figures
    return {
        "score": _float(figures.raw),
        "clipped": _float(figures.clipped),
        "gated": bool(figures.gated),
        "gated_by": [int(pk) for pk in figures.gated_by],
        "verdicts": [
            {
                "criterion": int(g.criterion_id),
                "outcome": str(g.outcome),
                "value": _float(g.value),
                "explanation": str(g.explanation),
                "error": str(g.error),
                "cached": bool(g.cached),
            }
            for g in reward.graded
        ],
        "flags": [str(flag) for flag in reward.flags],
        "steps": [
            {
                "step": int(s.step),
                "criterion": int(s.criterion_id),
                "outcome": str(s.outcome),
                "reward": _float(s.reward),
            }
            for s in reward.steps
        ],
    }


def _busy(exc: services.RewardBusy) -> Response:
    return Response(
        {"detail": str(exc)}, status=503, headers={"Retry-After": str(exc.retry_after_s)}
    )


class SuiteRewardScoreApi(APIView):
    """One reward URL per suite: each response graded by its task's pinned grader, through the
    same path (engine, cache, judge limits, deadline, concurrency bound) as RewardScoreApi."""

    @extend_schema_serializer(component_name="SuiteRewardRequest")
    class InputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="SuiteRewardItem")
        class ItemSerializer(serializers.Serializer):
            task = serializers.CharField(
                max_length=200, help_text="A task's external id in the suite version."
            )
            responses = serializers.ListField(
                child=RewardResponseField(),
                min_length=1,
                max_length=MAX_REWARD_RESPONSES,
                help_text="Model outputs to this task: texts or episodes. An empty, blank or "
                "null one is scored without a judge call: its judged criteria are not met. A "
                "bad episode is a 400 naming the item, the response's index and the field "
                "inside it.",
            )

        items = ItemSerializer(
            many=True,
            allow_empty=False,
            help_text=f"Tasks (mixed, in any order) and their responses: 1 to "
            f"{MAX_REWARD_RESPONSES} responses in all.",
        )
        judge = serializers.IntegerField(
            min_value=1, required=False, help_text="A judge's id; default: the project's first."
        )
        mode = serializers.ChoiceField(choices=GradingRun.Mode.choices, required=False)

        def validate_items(self, items):
            total = sum(len(item["responses"]) for item in items)
            if total > MAX_REWARD_RESPONSES:
                raise serializers.ValidationError(
                    f"At most {MAX_REWARD_RESPONSES} responses a request, in all items; "
                    f"this one has {total}."
                )
            return items

    @extend_schema_serializer(component_name="SuiteRewardResult")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="SuiteRewardItemResult")
        class ItemSerializer(serializers.Serializer):
            task = serializers.CharField(help_text="The task's external id, as sent.")
            grader = serializers.CharField(help_text="The hash of the task's pinned grader.")
            results = RewardScoreApi.OutputSerializer(
                many=True, help_text="Per response, in the order sent."
            )

        suite = serializers.IntegerField()
        version = serializers.IntegerField(help_text="The suite version graded with.")
        content_hash = serializers.CharField(help_text="That version's manifest hash.")
        items = ItemSerializer(many=True, help_text="Per item, in the order sent.")

    def _post(self, request: Request, pk: int, number: int | None) -> Response:
        # The role is checked before the body is read (its files would be stored) or its
        # errors told: a caller who may not grade learns nothing from a 400. The tasks asked
        # for are read with it, in one query.
        target = suite_to_score(
            request.user, pk, number, _asked_tasks(request.data), Perm.RUN_GRADING
        )
        data = self.InputSerializer(
            data=request.data, context={"files": reward_intake(target.project)}
        )
        valid_with_files(data)
        if target.unknown:
            listed = ", ".join(target.unknown[:20])
            more = f" and {len(target.unknown) - 20} more" if len(target.unknown) > 20 else ""
            raise ValidationError(
                {
                    "items": [
                        f"Not in version {target.version.number} of this suite: {listed}{more}."
                    ]
                }
            )
        judge = selectors.project_judge(target.project, data.validated_data.get("judge"))
        if judge is None:
            raise ValidationError({"judge": ["No such judge in this suite's project."]})
        sent = data.validated_data["items"]
        items = []
        for item in sent:
            task, grader = target.pinned[item["task"]]
            items.append(services.RewardItem(grader, task.messages, item["responses"]))
        try:
            results, store = services.reward_score(
                items=items,
                judge=judge,
                mode=data.validated_data.get("mode", GradingRun.Mode.PER_CRITERION),
            )
        except services.RewardBusy as exc:
            return _busy(exc)
        out = {
            "suite": pk,
            "version": target.version.number,
            "content_hash": target.version.content_hash,
            "items": [
                {
                    "task": item["task"],
                    "grader": graded.grader.hash,
                    "results": [_reward_out(r) for r in rewards],
                }
                for item, graded, rewards in zip(sent, items, results, strict=True)
            ],
        }
        return _ThenResponse(out, then=store)

    @extend_schema(
        tags=["grading"],
        summary="Score 1..256 responses to a suite's tasks now, by the newest version "
        "(one reward URL per suite)",
        description="Each response is graded by its task's grader as the suite's newest "
        "version pins it. An unknown task is a 400 naming it, before any judge call.",
        request=InputSerializer,
        responses={**responses({200: OutputSerializer}, 400, 403, 404), 503: REWARD_BUSY},
    )
    def post(self, request: Request, pk: int) -> Response:
        return self._post(request, pk, None)


def _asked_tasks(body) -> list[str]:
    """The task ids a suite reward request names, read before it is validated (as the
    serializer takes them: text of at most 200 characters)."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    return [
        item["task"]
        for item in items[:MAX_REWARD_RESPONSES]
        if isinstance(item, dict) and isinstance(item.get("task"), str) and len(item["task"]) <= 200
    ]


class SuiteVersionRewardScoreApi(SuiteRewardScoreApi):
    @extend_schema(
        tags=["grading"],
        summary="Score 1..256 responses to a suite's tasks now, by suite version `number`",
        description="As the suite's reward URL, with the graders this version pins.",
        request=SuiteRewardScoreApi.InputSerializer,
        responses={
            **responses({200: SuiteRewardScoreApi.OutputSerializer}, 400, 403, 404),
            503: REWARD_BUSY,
        },
    )
    def post(self, request: Request, pk: int, number: int) -> Response:
        return self._post(request, pk, number)


class _AfterReply:
    """How many writes of this process still wait to run after their reply was sent
    (`_ThenResponse`): a test, or a process about to stop, waits for them with `wait_idle`."""

    def __init__(self):
        self._pending = 0
        self._idle = threading.Condition()

    def add(self) -> None:
        with self._idle:
            self._pending += 1

    def done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending <= 0, timeout)


AFTER_REPLY = _AfterReply()


class _ThenResponse(Response):
    """A response that runs `then()` once it is sent: a WSGI server closes the response after
    writing its body (gunicorn before it reads the connection's next request; Django's test
    client before it returns), so the trainer does not wait on the cache and cost rows, and
    its next request on the connection finds them written. A crash in between loses only them."""

    def __init__(self, data, *, then, **kwargs):
        super().__init__(data, **kwargs)
        self._then = then
        AFTER_REPLY.add()

    def close(self) -> None:
        then, self._then = self._then, None
        try:
            if then is not None:
                then()
        except Exception:
            logger.exception("writing the reward endpoint's cache and cost rows failed")
        finally:
            if then is not None:
                AFTER_REPLY.done()
            super().close()
