"""JSON doors to leaderboards: a run's, and a suite's over its runs (grading/leaderboard.py).

Both need VIEW_RESULTS: annotators stay blind to models and scores.
"""

from __future__ import annotations

from django.core.cache import cache
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grading import selectors
from grading.results import kept, leaderboard
from rubrics.api.common import query_filters, responses, service_errors
from rubrics.permissions import Perm

LEADERBOARD_RULE = (
    "Models x (overall, each task, each axis tag, each task tag). Each cell is the HealthBench "
    "aggregation: the mean of the responses' raw scores, clipped to [0, 1] once averaged, with "
    "n, the scored responses it averages (responses with an error verdict have no score). "
    "Overall and tag cells carry a 95% percentile-bootstrap interval that resamples tasks "
    f"({leaderboard.BOOTSTRAP_RESAMPLES} resamples, fixed seed): each resample draws the tasks "
    "with replacement, and a cell is the mean over the responses of the tasks drawn. `tasks` "
    "are sorted by how much the models disagree (max minus min of their per-task means). "
    "On a run's leaderboard, a model's overall cell is its score on the run's page and lists. "
    "`heatmap` holds models x tasks, or models x groups of tasks above "
    f"{leaderboard.HEATMAP_MAX_COLUMNS} tasks (by task tag, else ordered buckets; `note` says "
    "which)."
)


@extend_schema_serializer(component_name="LeaderboardCell")
class CellSerializer(serializers.Serializer):
    mean = serializers.FloatField(
        allow_null=True,
        help_text="Mean of raw scores clipped to [0, 1]; null without a scored response.",
    )
    n = serializers.IntegerField(help_text="Scored responses averaged.")
    ci = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="95% bootstrap interval over tasks; null below two tasks.",
    )


@extend_schema_serializer(component_name="LeaderboardTagCell")
class TagCellSerializer(CellSerializer):
    tag = serializers.CharField()


@extend_schema_serializer(component_name="LeaderboardModel")
class ModelRowSerializer(serializers.Serializer):
    model = serializers.CharField()
    run = serializers.IntegerField(source="run_id", help_text="The run the row's scores come from.")
    overall = CellSerializer()
    axis_tags = TagCellSerializer(many=True, help_text="Per criterion (axis) tag.")
    task_tags = TagCellSerializer(many=True, help_text="Per task tag.")


@extend_schema_serializer(component_name="LeaderboardTaskCell")
class TaskCellSerializer(serializers.Serializer):
    model = serializers.CharField()
    mean = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField()


@extend_schema_serializer(component_name="LeaderboardTask")
class TaskRowSerializer(serializers.Serializer):
    task = serializers.CharField(source="external_id", help_text="The task's external id.")
    title = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    spread = serializers.FloatField(
        allow_null=True,
        help_text="Max minus min of the models' means on the task; null below two models.",
    )
    cells = TaskCellSerializer(many=True, help_text="Per model, in the order of `models`.")


@extend_schema_serializer(component_name="LeaderboardHeatmap")
class HeatmapSerializer(serializers.Serializer):
    models = serializers.ListField(child=serializers.CharField())
    columns = serializers.ListField(
        child=serializers.CharField(), help_text="Task external ids, tags or bucket ranges."
    )
    values = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="One row per model, one value per column.",
    )
    n = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()))
    grouped = serializers.ChoiceField(choices=["task", "tag", "bucket"])
    note = serializers.CharField(allow_blank=True)


@extend_schema_serializer(component_name="Leaderboard")
class LeaderboardSerializer(serializers.Serializer):
    models = ModelRowSerializer(many=True, help_text="Best overall mean first.")
    axis_tags = serializers.ListField(child=serializers.CharField())
    task_tags = serializers.ListField(child=serializers.CharField())
    task_count = serializers.IntegerField(help_text="Tasks with a scored response.")
    tasks = serializers.SerializerMethodField(help_text="Most disagreement first.")
    heatmap = HeatmapSerializer()
    resamples = serializers.IntegerField()
    seed = serializers.IntegerField()
    runs = serializers.ListField(child=serializers.IntegerField())
    note = serializers.CharField(allow_blank=True)

    @extend_schema_field(TaskRowSerializer(many=True))
    def get_tasks(self, board: leaderboard.Leaderboard) -> list:
        # Rows are built for the tasks listed only (`top` in the context; None: all), as
        # TaskRowSerializer's output written out: 5,000 tasks through nested serializers
        # took most of the request's CPU (bench/pages.py).
        top = self.context.get("top")
        names = [m.model for m in board.models]
        return [
            {
                "task": str(external_id),
                "title": str(title),
                "tags": [str(t) for t in tags],
                "spread": None if spread is None else float(spread),
                "cells": [
                    {"model": name, "mean": None if mean is None else float(mean), "n": int(n)}
                    for name, (mean, n) in zip(names, cells, strict=True)
                ],
            }
            for (_, external_id, title, tags, spread), cells in zip(
                board.task_info[:top], board.task_cells[:top], strict=True
            )
        ]


@extend_schema_serializer(component_name="SuiteLeaderboard")
class SuiteLeaderboardSerializer(LeaderboardSerializer):
    suite = serializers.IntegerField(source="suite_id")
    version = serializers.IntegerField(
        source="version.number", allow_null=True, help_text="Null: the suite is not frozen."
    )
    content_hash = serializers.CharField(source="version.content_hash", allow_null=True)


MAX_ID = 2**31 - 1


@extend_schema_serializer(component_name="LeaderboardFilter")
class TopFilter(serializers.Serializer):
    top = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_ID,
        help_text="List only this many tasks, most disagreement first (default: all).",
    )


@extend_schema_serializer(component_name="SuiteLeaderboardFilter")
class SuiteFilter(TopFilter):
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="The suite version's number (default: the newest).",
    )


def _answer(request: Request, board: leaderboard.Leaderboard, serializer, top: int | None):
    """The leaderboard as JSON. A cached leaderboard's JSON is cached beside it, as bytes:
    at 5,000 tasks (1 MB) making and encoding it was most of the request, each time."""
    renderer = request.accepted_renderer
    if not board.cache_key or renderer.format != "json":
        return Response(serializer(board, context={"top": top}).data)
    key = f"{board.cache_key}:json:{serializer.__name__}:{top}"
    body = cache.get(key)
    if body is None:
        body = renderer.render(serializer(board, context={"top": top}).data)
        cache.set(key, body, timeout=kept.CACHE_S)
    return HttpResponse(body, content_type=renderer.media_type)


class RunLeaderboardApi(APIView):
    @extend_schema(
        tags=["grading"],
        summary="A run's leaderboard",
        description=LEADERBOARD_RULE,
        parameters=[TopFilter],
        responses=responses({200: LeaderboardSerializer}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        run = selectors.run_for(request.user, pk, Perm.VIEW_RESULTS)
        f = query_filters(request, TopFilter, paged=False)
        board = leaderboard.run_leaderboard(run)
        return _answer(request, board, LeaderboardSerializer, f.get("top"))


class SuiteLeaderboardApi(APIView):
    @extend_schema(
        tags=["grading"],
        summary="A suite's leaderboard over its runs",
        description=LEADERBOARD_RULE
        + " For each model, the newest completed run over the suite version that scored it; "
        "each model's `run` names it.",
        parameters=[SuiteFilter],
        responses=responses({200: SuiteLeaderboardSerializer}, 400, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        suite = selectors.suite_for(request.user, pk, Perm.VIEW_RESULTS)
        f = query_filters(request, SuiteFilter, paged=False)
        with service_errors():
            board = leaderboard.suite_leaderboard(suite, f.get("version"))
        return _answer(request, board, SuiteLeaderboardSerializer, f.get("top"))
