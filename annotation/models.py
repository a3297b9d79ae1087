from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from rubrics.models import Criterion, Grader, Project, Task


class Response(models.Model):
    """One model output for a task. Immutable once imported."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="responses")
    model = models.CharField(max_length=200)
    # The final answer: the whole response when it is a text, the last assistant message's
    # text when it is an episode. Outcome criteria grade it.
    text = models.TextField()
    # An episode (annotation.content.episode: messages with tool calls, final state,
    # metadata) in the shape Episode.as_json writes; null for a plain text response.
    content = models.JSONField(null=True, blank=True)
    sample_index = models.PositiveIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "model", "sample_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "model", "sample_index"], name="response_sample_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model} on {self.task.external_id} #{self.sample_index}"

    @property
    def episode(self):
        """The response's content as an Episode (a text is one assistant message)."""
        from annotation.content.episode import Episode

        return Episode.load(self.content, self.text)


class ResponseFlag(models.Model):
    """Why a response looks aimed at its grader (instructions to the grader, forged verdicts,
    fake fences, master-key replies...), as the injection detector found it. Derived from the
    response's text, which never changes; the detector that found it is named."""

    response = models.OneToOneField(Response, on_delete=models.CASCADE, related_name="flag")
    reasons = models.JSONField(default=list)  # [{"rule", "why", "excerpt"}], in order found
    detector = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"flag on response {self.response_id}"

    @property
    def summary(self) -> str:
        return "; ".join(r.get("why", "") for r in self.reasons)


class Rater(models.Model):
    """Who decides: a person or a judge, so agreement treats them alike."""

    class Kind(models.TextChoices):
        PERSON = "person", "Person"
        JUDGE = "judge", "Judge"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="raters")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    name = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="judge") | Q(user__isnull=False), name="person_rater_has_user"
            ),
            models.UniqueConstraint(
                fields=["project", "user"], condition=Q(kind="person"), name="one_rater_per_person"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class VerdictQuerySet(models.QuerySet):
    def submitted(self):
        """Verdicts that count: every judge's, and a person's once they submit the item. A
        person's verdict on an item they have not submitted is their draft, nobody's verdict
        yet: the verdicts API, exports, agreement and calibration all read through here."""
        return self.filter(Q(assignment__isnull=True) | Q(assignment__status="submitted"))


class Verdict(models.Model):
    """One rater's decision on one criterion of one response, with its provenance."""

    class Outcome(models.TextChoices):
        MET = "met", "Met"
        UNMET = "unmet", "Not met"
        NOT_APPLICABLE = "na", "Not applicable"
        ERROR = "error", "Error"

    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="verdicts")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="verdicts")
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="verdicts")
    grader = models.ForeignKey(
        Grader, null=True, blank=True, on_delete=models.PROTECT, related_name="verdicts"
    )
    # Grading runs live in `grading`, which depends on this app. The reference is by name
    # only (no import), so that the database enforces one verdict per (run, item).
    run = models.ForeignKey(
        "grading.GradingRun",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="verdicts",
    )
    # A person's verdict belongs to the queue assignment it was given under; judges' have none.
    assignment = models.ForeignKey(
        "Assignment",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="verdicts",
    )
    # The judge call that decided a run's verdict (one call may decide several, batched);
    # null for a person's, a cached answer, a check in code, or a call never sent.
    call = models.ForeignKey(
        "grading.JudgeCall",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="verdicts",
    )
    sample_index = models.PositiveIntegerField(default=0)
    # A step criterion's verdict at one step of an episode: the index of that assistant
    # message (annotation.content.episode). Null for a verdict on the whole response, which
    # is also what a step criterion's per-response verdict (its step rule's result) has.
    step = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    # A scale criterion's value normalised to [0, 1]; null for binary and checked criteria.
    value = models.FloatField(null=True, blank=True)
    explanation = models.TextField(blank=True)
    evidence = models.TextField(blank=True)
    # The message the evidence is quoted from (its index in the episode), when it is not the
    # final answer; a step verdict's evidence is anchored to its own step.
    evidence_step = models.PositiveIntegerField(null=True, blank=True)
    # Where in a file of that message the evidence is (annotation.content.evidence.parse_anchor):
    # {"file": sha256, "page": n[, "region": [x, y, w, h]]} or {"file", "sheet", "cell"}.
    evidence_anchor = models.JSONField(null=True, blank=True)
    # Provenance of judge verdicts: the model that answered, whether it was the simulator,
    # the raw reply when it could not be parsed, and the tokens it cost.
    judge_model = models.CharField(max_length=200, blank=True)
    simulated = models.BooleanField(default=False)
    raw_output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # A judge verdict on a response that addresses its grader (see ResponseFlag): it counts
    # like any other, and it is listed for a reviewer to confirm or overrule.
    needs_review = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VerdictQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "response", "criterion", "rater", "sample_index"],
                condition=Q(run__isnull=False, step__isnull=True),
                name="one_verdict_per_run_item",
            ),
            models.UniqueConstraint(
                fields=["run", "response", "criterion", "rater", "sample_index", "step"],
                condition=Q(run__isnull=False, step__isnull=False),
                name="one_verdict_per_run_item_step",
            ),
            models.UniqueConstraint(
                fields=["assignment", "criterion"],
                condition=Q(assignment__isnull=False, step__isnull=True),
                name="one_verdict_per_assignment_criterion",
            ),
            models.UniqueConstraint(
                fields=["assignment", "criterion", "step"],
                condition=Q(assignment__isnull=False, step__isnull=False),
                name="one_verdict_per_assignment_criterion_step",
            ),
            models.CheckConstraint(
                condition=~Q(outcome="error") | ~Q(error=""), name="error_verdict_says_why"
            ),
        ]
        indexes = [
            models.Index(fields=["run", "response"]),
            models.Index(fields=["criterion", "rater"]),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} on criterion {self.criterion_id} of response {self.response_id}"


class Queue(models.Model):
    """Responses to grade by hand against one published grader, each by `overlap` annotators."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="queues")
    name = models.CharField(max_length=200)
    grader = models.ForeignKey(Grader, on_delete=models.PROTECT, related_name="queues")
    overlap = models.PositiveSmallIntegerField(default=2)
    # An item opened and left alone this long is handed to someone else.
    lease_seconds = models.PositiveIntegerField(default=30 * 60)
    # Instructions for the annotators (Markdown, shown sanitized above the rubric).
    guidelines = models.TextField(blank=True, default="")
    # Whether the annotation page shows the task's newest reference answer.
    show_reference = models.BooleanField(default=False)
    annotators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="annotation_queues", blank=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="queue_name_unique"),
            models.CheckConstraint(
                condition=Q(overlap__gte=1) & Q(overlap__lte=20), name="queue_overlap_range"
            ),
            models.CheckConstraint(condition=Q(lease_seconds__gte=1), name="queue_lease_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class QueueItem(models.Model):
    """One response in a queue. Its row is the lock that serialises hand-out and submit."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="items")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="queue_items")

    class Meta:
        ordering = ["queue", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "response"], name="queue_item_unique")
        ]

    def __str__(self) -> str:
        return f"item {self.pk} of {self.queue_id}"


class Assignment(models.Model):
    """One annotator's turn at one queue item. Never two for the same (item, annotator)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "In progress"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    item = models.ForeignKey(QueueItem, on_delete=models.CASCADE, related_name="assignments")
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    skip_reason = models.TextField(blank=True)
    opened_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    seconds_spent = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="one_turn_per_annotator"),
            models.CheckConstraint(
                condition=~Q(status="skipped") | ~Q(skip_reason=""), name="skip_says_why"
            ),
            models.CheckConstraint(
                condition=~Q(status="submitted") | Q(submitted_at__isnull=False),
                name="submitted_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["item", "status"]),
            models.Index(fields=["queue", "annotator", "status"]),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk} ({self.status})"


class Adjudication(models.Model):
    """A reviewer's gold verdict on one (response, criterion). Append-only: a new decision
    is a new row naming the one it replaces, so the audit trail is the table itself."""

    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="adjudications")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="adjudications")
    # A gold verdict at one step of a step criterion (the step's message index, as
    # Verdict.step); null for gold on the whole response.
    step = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Verdict.Outcome.choices)
    value = models.FloatField(null=True, blank=True)
    note = models.TextField(blank=True)
    # Where in a file of the response the reviewer saw it, as Verdict.evidence_anchor (checked
    # by annotation.content.evidence.check_anchor); null when the gold points at nothing.
    evidence_anchor = models.JSONField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(auto_now_add=True)
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by"
    )

    class Meta:
        ordering = ["-decided_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=["met", "unmet", "na"]), name="gold_is_a_decision"
            ),
            # One first decision per item (and per step); every later one replaces exactly
            # one before it.
            models.UniqueConstraint(
                fields=["response", "criterion"],
                condition=Q(replaces__isnull=True, step__isnull=True),
                name="one_first_gold_per_item",
            ),
            models.UniqueConstraint(
                fields=["response", "criterion", "step"],
                condition=Q(replaces__isnull=True, step__isnull=False),
                name="one_first_gold_per_item_step",
            ),
        ]
        indexes = [models.Index(fields=["criterion", "response"])]

    def __str__(self) -> str:
        return f"gold {self.outcome} on {self.criterion_id}/{self.response_id}"


class CalibrationSettings(models.Model):
    """What a project counts as good enough: criteria below the threshold are flagged."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="calibration_settings"
    )
    # Cohen's kappa of a judge against gold, and Krippendorff's alpha among people.
    threshold = models.FloatField(default=0.6)
    # A figure over fewer items than this is shown with its n but flags nothing: kappa -1.00
    # over two items is noise, not a finding about the criterion.
    min_items = models.PositiveIntegerField(default=10)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold__gte=-1) & Q(threshold__lte=1), name="threshold_range"
            ),
            models.CheckConstraint(condition=Q(min_items__gte=1), name="min_items_positive"),
        ]

    def __str__(self) -> str:
        return f"calibration threshold {self.threshold}"


class ImportJob(models.Model):
    """A large upload, imported by a worker with its progress on this row.

    `heartbeat_at` is the last sign of life: when the job was queued, or when its worker last
    wrote progress. A job queued or running with no sign of life for ASSAY_IMPORT_STALL_S is
    lost (its worker was killed, its task dropped) and the recovery sweep queues it again, up
    to ASSAY_IMPORT_MAX_ATTEMPTS tries in all (annotation.import_jobs)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Importing"
        DONE = "done", "Imported"
        FAILED = "failed", "Refused"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    filename = models.CharField(max_length=300)
    file = models.CharField(max_length=500)  # a name in default_storage, deleted when done
    # The bundle of files uploaded beside the responses (a name in default_storage, deleted
    # when done), or "" (none, or `file` is itself a bundle).
    bundle = models.CharField(max_length=500, blank=True, default="")
    bundle_name = models.CharField(max_length=300, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    created = models.PositiveBigIntegerField(default=0)
    already_present = models.PositiveBigIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)  # the first errors, as text
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)  # workers that claimed it
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["heartbeat_at"],
                name="import_job_live",
                condition=Q(status__in=["queued", "running"]),
            )
        ]

    def __str__(self) -> str:
        return f"import of {self.filename}"

    @property
    def percent(self) -> int:
        if self.status in (self.Status.DONE, self.Status.FAILED):
            return 100
        return min(99, int(100 * self.rows_done / self.rows_total)) if self.rows_total else 0
