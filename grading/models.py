from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Rater, Response
from rubrics.models import Grader, Project, SuiteVersion


class Judge(models.Model):
    """An OpenAI-compatible chat-completions endpoint. Its API key is the project's own,
    stored encrypted and sent only to the host it was entered for, or (where the operator
    binds one to this host) a deployment variable's."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judges")
    name = models.CharField(max_length=100)
    base_url = models.URLField(max_length=500)
    model = models.CharField(max_length=200)
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="A deployment variable the operator bound to this host (never the key).",
    )
    # The project's key, encrypted (assay.secrets); never shown again, only its last characters.
    api_key_secret = models.TextField(blank=True, default="")
    api_key_last4 = models.CharField(max_length=4, blank=True, default="")
    # The host the key was entered for: it is sent nowhere else (grading.judges.client).
    api_key_host = models.CharField(max_length=255, blank=True, default="")
    # Limits hold across every worker process and machine together (grading.judges.limits,
    # in Redis).
    max_concurrency = models.PositiveIntegerField(default=8, help_text="Max requests in flight.")
    requests_per_minute = models.PositiveIntegerField(default=0, help_text="0: no limit.")
    tokens_per_minute = models.PositiveIntegerField(default=0, help_text="0: no limit.")
    send_cache_key = models.BooleanField(
        default=True,
        help_text="Send a stable prompt_cache_key per response (OpenAI accepts it; most "
        "compatible servers ignore it).",
    )
    temperature = models.FloatField(default=0.0)
    use_json_schema = models.BooleanField(
        default=True,
        help_text="Ask for structured output (response_format json_schema); turn off for "
        "servers that do not support it. Replies are validated either way.",
    )
    # What the judge takes besides text (grading.engine, annotation.content.render.Sight):
    # a judge that sees images is sent image parts (and a PDF's first pages as images); one
    # that reads files natively is sent document parts too. Every judge reads a file's text as
    # Assay converts it, and one that cannot see images is told an image was there.
    accepts_images = models.BooleanField(
        default=False,
        help_text="A vision model: images (and a PDF's first pages) are sent as image_url parts.",
    )
    accepts_files = models.BooleanField(
        default=False,
        help_text="Reads files natively: documents are sent as file parts beside their text.",
    )
    rater = models.OneToOneField(Rater, on_delete=models.PROTECT, related_name="judge")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="judge_name_unique"),
            models.CheckConstraint(
                condition=Q(max_concurrency__gte=1) & Q(max_concurrency__lte=1024),
                name="judge_concurrency_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"


class ModelPrice(models.Model):
    """What a judge model costs, per million tokens, as an admin sets it."""

    model = models.CharField(max_length=200, unique=True)
    input_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    cached_input_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    output_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)

    def __str__(self) -> str:
        return self.model

    def cost(self, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
        fresh = max(0, prompt_tokens - cached_tokens)
        return (
            fresh * float(self.input_per_mtok)
            + cached_tokens * float(self.cached_input_per_mtok)
            + completion_tokens * float(self.output_per_mtok)
        ) / 1_000_000


class GradingRun(models.Model):
    class Mode(models.TextChoices):
        PER_CRITERION = "per_criterion", "One call per criterion"
        BATCHED = "batched", "One call per response (all criteria)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    # What the run grades against: each response by its task's grader pinned in this frozen
    # suite version (a run over one rubric grades that rubric's suite of one).
    suite_version = models.ForeignKey(SuiteVersion, on_delete=models.PROTECT, related_name="runs")
    # The response set it was asked for: {"models": [...], "sample_indices": [...],
    # "tasks": [external ids]}; an absent key means all.
    selection = models.JSONField(default=dict, blank=True)
    # The lead judge; `panel` adds more. Each judge's verdicts are kept under its own rater.
    judge = models.ForeignKey(Judge, on_delete=models.PROTECT, related_name="runs")
    panel = models.ManyToManyField(Judge, blank=True, related_name="panel_runs")
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.PER_CRITERION)
    samples = models.PositiveSmallIntegerField(
        default=1, help_text="Judge samples per item; more than 1 only when temperature > 0."
    )
    use_cache = models.BooleanField(default=True)
    estimate = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    total_items = models.PositiveIntegerField(default=0)
    simulated = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A completed run's score per model (grading.results.leaderboard.model_scores), written when it
    # completes and cleared when it reopens (retry, resume): its pages read them, not its
    # scores. Null while it is not completed, and for a run completed before they were
    # stored (or whose worker stopped in between): then its first read stores them.
    model_scores = models.JSONField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(samples__gte=1) & Q(samples__lte=16), name="run_samples_range"
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.COMPLETED, self.Status.CANCELLED)

    @property
    def sole_grader(self) -> Grader | None:
        """The one grader of every response, when the suite version pins only one."""
        return self.suite_version.sole_grader

    @property
    def target_label(self) -> str:
        """What the run grades, as a person names it: a rubric's version for a run over one
        rubric, else the suite and its version."""
        version = self.suite_version
        grader = version.sole_grader
        if version.suite.rubric_id and grader is not None:
            return f"{grader.version.rubric.title} v{grader.version.number}"
        return f"{version.suite.name} · suite v{version.number}"


class Score(models.Model):
    """One response's score in one run; a pending row is work not yet done."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"

    run = models.ForeignKey(GradingRun, on_delete=models.CASCADE, related_name="scores")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="scores")
    # The grader the run's suite version pins for the response's task.
    grader = models.ForeignKey(Grader, on_delete=models.PROTECT, related_name="scores")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # HealthBench: points of met criteria / sum of positive points. Raw may fall below 0;
    # means over responses are clipped to [0, 1]. Null when any verdict is an error.
    raw = models.FloatField(null=True, blank=True)
    met_points = models.FloatField(default=0)
    possible_points = models.FloatField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    # {tag: raw score over the criteria carrying that axis tag}
    by_tag = models.JSONField(default=dict, blank=True)
    # Ids of the gate criteria the response missed, in rubric order; any caps raw at
    # min(raw, 0). Empty: not gated.
    gated_by = models.JSONField(default=list, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "response"], name="one_score_per_run_response")
        ]
        indexes = [models.Index(fields=["run", "status"])]

    def __str__(self) -> str:
        return f"score of response {self.response_id} in run {self.run_id}"

    @property
    def clipped(self) -> float | None:
        return None if self.raw is None else min(1.0, max(0.0, self.raw))

    @property
    def gated(self) -> bool:
        return bool(self.gated_by)


class DatasetSnapshot(models.Model):
    """A named, immutable export of a project's data, with what produced it and its SHA-256."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    name = models.SlugField(max_length=100)
    format = models.CharField(max_length=40)
    params = models.JSONField(default=dict, blank=True)
    license = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    file = models.CharField(max_length=500, blank=True)  # a name in default_storage
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    provenance = models.JSONField(default=dict, blank=True)
    card = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="snapshot_name_unique"),
            models.CheckConstraint(
                condition=~Q(status="ready") | ~Q(sha256=""), name="ready_snapshot_has_hash"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def percent(self) -> int:
        if self.status == self.Status.READY:
            return 100
        return min(99, int(100 * self.rows_done / self.rows_total)) if self.rows_total else 0


class JudgeCall(models.Model):
    """One judge call that answered (or failed for good): what it asked, what came back, what
    it cost and how it went. A run's calls, tokens and cost are sums over these rows; the
    verdicts it decided point to it (annotation.Verdict.call)."""

    run = models.ForeignKey(
        GradingRun, null=True, blank=True, on_delete=models.CASCADE, related_name="calls"
    )
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="calls")
    response = models.ForeignKey(
        Response, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    sample_index = models.PositiveIntegerField(default=0)
    criteria = models.PositiveIntegerField(default=1, help_text="Criteria graded by the call.")
    attempts = models.PositiveIntegerField(default=1)
    prompt_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=40, blank=True)
    # The request's JSON body as sent (its first ask; never its headers, so never a key), and
    # the judge's raw reply (its last); each cut with a note when long (grading.engine).
    request = models.TextField(blank=True, default="")
    reply = models.TextField(blank=True, default="")
    # Time in HTTP exchanges with the judge, over all attempts (not waits for a slot).
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["run"])]

    def __str__(self) -> str:
        return f"judge call {self.pk}"


class CachedVerdict(models.Model):
    """A judge's answer, content-addressed by all that shaped it (grading.engine.cache_key).
    Only readable answers are cached; errors are asked again."""

    key = models.CharField(max_length=64, unique=True)
    outcome = models.CharField(max_length=10)
    value = models.FloatField(null=True, blank=True)
    explanation = models.TextField(blank=True)
    raw_output = models.TextField(blank=True)
    judge_model = models.CharField(max_length=200, blank=True)
    simulated = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class WorkerHeartbeat(models.Model):
    """A Celery worker's sign of life, written every ASSAY_WORKER_HEARTBEAT_S by a thread of
    its main process (grading.workers). In the database rather than asked of the broker, so
    it holds on every broker: the embedded filesystem queue has no broadcast for a ping."""

    name = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} seen at {self.seen_at:%H:%M:%S}"
