"""JSON doors for a project's judges: list, add, read, change, test the connection,
delete.

Reading needs VIEW_RESULTS: annotators stay blind to the judge.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grading import selectors, services
from rubrics.api.common import query_filters, responses, service_errors
from rubrics.permissions import Perm, project_for


@extend_schema_serializer(component_name="Judge")
class JudgeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    base_url = serializers.CharField()
    model = serializers.CharField()
    api_key_env = serializers.CharField(
        help_text="A deployment variable the operator bound to this host; never the key."
    )
    api_key_set = serializers.SerializerMethodField(
        help_text="Whether the project's own key is set (it is never shown)."
    )
    api_key_last4 = serializers.CharField(
        help_text="The last 4 characters of the project's key (long keys only), or ''."
    )
    max_concurrency = serializers.IntegerField(help_text="Max requests in flight, all workers.")
    requests_per_minute = serializers.IntegerField(help_text="0: no limit.")
    tokens_per_minute = serializers.IntegerField(help_text="0: no limit.")
    temperature = serializers.FloatField()
    use_json_schema = serializers.BooleanField()
    send_cache_key = serializers.BooleanField()
    accepts_images = serializers.BooleanField(
        help_text="Sees images: images and a PDF's first pages are sent as image_url parts."
    )
    accepts_files = serializers.BooleanField(
        help_text="Reads files natively: documents are sent as file parts beside their text."
    )
    created_at = serializers.DateTimeField()

    def get_api_key_set(self, judge) -> bool:
        return bool(judge.api_key_secret)


class JudgeListApi(APIView):
    OutputSerializer = JudgeSerializer

    @extend_schema(
        tags=["grading"],
        summary="The project's judges",
        responses=responses({200: OutputSerializer(many=True)}, 400, 403, 404),
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.VIEW_RESULTS)
        query_filters(request, paged=False)
        judges = selectors.project_judges(project)
        return Response(self.OutputSerializer(judges, many=True).data)


class JudgeCreateApi(APIView):
    @extend_schema_serializer(component_name="JudgeCreate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        base_url = serializers.CharField(
            max_length=500, help_text="OpenAI-compatible, e.g. https://api.openai.com/v1"
        )
        model = serializers.CharField(max_length=200)
        api_key = serializers.CharField(
            max_length=2000,
            required=False,
            allow_blank=True,
            write_only=True,
            style={"input_type": "password"},
            help_text="The project's own API key for this endpoint: stored encrypted, sent "
            "only to base_url's host, never shown again. Changing base_url to another host "
            "clears it unless it is given again; '' clears it.",
        )
        api_key_env = serializers.CharField(
            max_length=100,
            required=False,
            allow_blank=True,
            help_text="Instead of api_key: the *name* of a deployment variable the operator "
            "bound to base_url's host (ASSAY_JUDGE_KEY_VARIABLES); never the key itself.",
        )
        max_concurrency = serializers.IntegerField(min_value=1, max_value=1024, required=False)
        temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
        use_json_schema = serializers.BooleanField(required=False)
        requests_per_minute = serializers.IntegerField(
            min_value=0, max_value=services.MAX_PER_MINUTE, required=False
        )
        tokens_per_minute = serializers.IntegerField(
            min_value=0, max_value=services.MAX_PER_MINUTE, required=False
        )
        send_cache_key = serializers.BooleanField(required=False)
        accepts_images = serializers.BooleanField(
            required=False,
            help_text="A vision model: images and a PDF's first pages are sent as image_url "
            "parts; a judge that cannot see images is told one was there (default false).",
        )
        accepts_files = serializers.BooleanField(
            required=False,
            help_text="Reads files natively: documents are also sent as file parts (default "
            "false). Every judge reads a file's text as Assay converts it.",
        )

    OutputSerializer = JudgeSerializer

    @extend_schema(
        tags=["grading"],
        summary="Add a judge (admins only)",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 403, 404),
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request.user, slug, Perm.MANAGE_JUDGES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with service_errors():
            judge = services.judge_create(
                project=project, actor=request.user, **data.validated_data
            )
        return Response(self.OutputSerializer(judge).data, status=status.HTTP_201_CREATED)


JUDGE_RULE = (
    "Limits, temperature, name and the key may change at any time; new calls use "
    "them at once. A judge that has graded (runs, reward calls or verdicts) keeps its base "
    "URL and model, so its verdicts still say who judged (409): add a new judge instead. "
    "Such a judge is never deleted (409)."
)


class JudgeDetailApi(APIView):
    OutputSerializer = JudgeSerializer

    @extend_schema(
        tags=["grading"],
        summary="A judge's settings (never its key)",
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            self.OutputSerializer(selectors.judge_for(request.user, pk, Perm.VIEW_RESULTS)).data
        )


class JudgeUpdateApi(APIView):
    OutputSerializer = JudgeSerializer

    @extend_schema(
        tags=["grading"],
        summary="Change some of a judge's settings (admins only)",
        description=JUDGE_RULE,
        request=JudgeCreateApi.InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 403, 404, 409),
    )
    def patch(self, request: Request, pk: int) -> Response:
        judge = selectors.judge_for(request.user, pk, Perm.MANAGE_JUDGES)
        data = JudgeCreateApi.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        if not data.validated_data:
            raise ValidationError({"non_field_errors": ["Give at least one setting to change."]})
        with service_errors():
            judge = services.judge_update(judge=judge, **data.validated_data)
        return Response(self.OutputSerializer(judge).data)


class JudgeTestApi(APIView):
    class OutputSerializer(serializers.Serializer):
        ok = serializers.BooleanField(help_text="The judge answered with a chat completion.")
        latency_ms = serializers.IntegerField(
            help_text="From sending to the reply read (or the failure)."
        )
        model = serializers.CharField(help_text="The model that answered, as the judge named it.")
        answer = serializers.CharField(help_text="Its answer, cut to 200 characters.")
        simulated = serializers.BooleanField(help_text="Answered by Assay's judge simulator.")
        prompt_tokens = serializers.IntegerField()
        completion_tokens = serializers.IntegerField()
        reason = serializers.CharField(
            help_text="Why it failed, short (address_refused, key_refused, timeout, "
            "connection, http_401, ...); empty when ok."
        )
        message = serializers.CharField(help_text="What went wrong, for a person; empty when ok.")

    @extend_schema(
        tags=["grading"],
        summary="Test a judge's connection (admins and engineers)",
        description="Sends one tiny request through the grading client (the same address and "
        "key checks, the same deadline), tried once. Always 200: a failure is an outcome, "
        "with `ok` false. Nothing is recorded.",
        request=None,
        responses=responses({200: OutputSerializer}, 403, 404),
    )
    def post(self, request: Request, pk: int) -> Response:
        judge = selectors.judge_for(request.user, pk, Perm.RUN_GRADING)
        outcome = services.judge_test_connection(judge=judge)
        return Response(self.OutputSerializer(outcome).data)


class JudgeDeleteApi(APIView):
    @extend_schema(
        tags=["grading"],
        summary="Delete a judge that never graded (admins only)",
        description=JUDGE_RULE,
        request=None,
        responses=responses({204: None}, 403, 404, 409),
    )
    def delete(self, request: Request, pk: int) -> Response:
        judge = selectors.judge_for(request.user, pk, Perm.MANAGE_JUDGES)
        with service_errors():
            services.judge_delete(judge=judge)
        return Response(status=status.HTTP_204_NO_CONTENT)
