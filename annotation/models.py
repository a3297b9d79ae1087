from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from rubrics.models import Criterion, Grader, Project, Task


class Response(models.Model):
    """One model output for a task. Immutable once imported."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="responses")
    model = models.CharField(max_length=200)
    text = models.TextField()
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
    sample_index = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    # A scale criterion's value normalised to [0, 1]; null for binary and checked criteria.
    value = models.FloatField(null=True, blank=True)
    explanation = models.TextField(blank=True)
    evidence = models.TextField(blank=True)
    # Provenance of judge verdicts: the model that answered, whether it was the simulator,
    # the raw reply when it could not be parsed, and the tokens it cost.
    judge_model = models.CharField(max_length=200, blank=True)
    simulated = models.BooleanField(default=False)
    raw_output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "response", "criterion", "rater", "sample_index"],
                condition=Q(run__isnull=False),
                name="one_verdict_per_run_item",
            ),
            models.CheckConstraint(
                condition=~Q(outcome="error") | ~Q(error=""), name="error_verdict_says_why"
            ),
        ]
        indexes = [models.Index(fields=["run", "response"])]

    def __str__(self) -> str:
        return f"{self.outcome} on criterion {self.criterion_id} of response {self.response_id}"
