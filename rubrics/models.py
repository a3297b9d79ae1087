from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from rubrics import event_text


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    AUTHOR = "author", "Author"
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"
    ENGINEER = "engineer", "Engineer"


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_known"),
        ]

    def __str__(self) -> str:
        return f"{self.user} as {self.role} in {self.project}"


class Invitation(models.Model):
    """A project admin's invitation to a username: that user becomes a member only by
    accepting it. `user` is the account the name belonged to when invited, or null when there
    was none: such a row matches nobody (a name signed up later does not inherit it), and the
    admin sees both alike, so inviting tells nobody which usernames exist."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    username = models.CharField(max_length=150)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="invitations",
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "username"], name="one_invitation_per_name"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="invitation_role_known"),
        ]

    def __str__(self) -> str:
        return f"{self.username} invited to {self.project_id} as {self.role}"


class Task(models.Model):
    """What the model is asked to do: chat messages, plus context and tags."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    external_id = models.CharField(max_length=200)
    title = models.CharField(max_length=300)
    messages = models.JSONField(default=list)
    context = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    # Fields of an imported row that Assay has no column for, written back on export.
    extra = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"], name="task_external_id_unique"
            )
        ]

    def __str__(self) -> str:
        return self.title or self.external_id

    @property
    def prompt_text(self) -> str:
        """The text of the last user message: what a person reads as 'the prompt'."""
        from rubrics.files import parts

        for message in reversed(self.messages):
            if message.get("role") == "user":
                return parts.only_text(message.get("content", ""))
        return ""

    @property
    def files(self) -> list:
        """The images and files the prompt carries (FileRef), in message order."""
        from rubrics.files import parts

        return [ref for m in self.messages for ref in parts.refs(m.get("content"))]


def reference_file_path(instance, filename: str) -> str:
    """Where attached files were stored before migration 0017 moved them into the
    content-addressed store; kept because migration 0008 names it."""
    return f"references/{instance.task_id}/{uuid.uuid4().hex}/{filename}"


class ReferenceDeliverable(models.Model):
    """An expert's exemplary answer for a task, in Markdown, with an optional attached file
    (a spreadsheet, a signed memo, a PDF). The file is a stored file of the project
    (`rubrics.files.store`, named by `file_sha256`), like a task's or a response's: sniffed,
    shown beside the rubric and served to members by `file_view` (and `reference_file`)."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="references")
    body = models.TextField(blank=True)
    # The sanitized name the file is offered under, its SHA-256 (its name in the store), its
    # kind (rubrics.files.sniff.KINDS; "other" for a file attached before files were sniffed,
    # served only as a download) and its size in bytes.
    file_name = models.CharField(max_length=200, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True)
    file_kind = models.CharField(max_length=10, blank=True)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(body="") | ~Q(file_sha256=""), name="reference_has_body_or_file"
            ),
            models.CheckConstraint(
                condition=Q(file_sha256="")
                | (~Q(file_name="") & ~Q(file_kind="") & Q(file_size__isnull=False)),
                name="reference_file_is_described",
            ),
        ]

    def __str__(self) -> str:
        return f"reference for {self.task_id}"

    @property
    def has_file(self) -> bool:
        return bool(self.file_sha256)

    @property
    def file_ref(self):
        """The attached file as a FileRef (None without one)."""
        from rubrics.files.store import FileRef

        if not self.file_sha256:
            return None
        return FileRef(self.file_sha256, self.file_kind, self.file_name, self.file_size or 0)

    @property
    def file_list(self) -> list:
        return [self.file_ref] if self.file_sha256 else []


class StoredFile(models.Model):
    """A file a project holds: an image or deliverable in a response, an image in a task, a
    reference's attachment. The bytes are stored once, by their SHA-256, in Django's default
    storage (`rubrics.files.store`), never under a public URL; this row says the project holds
    them (the serving view checks the reader is a member) and what they are. A file's name
    belongs to the part that carries it, not here: one file may be sent under many names."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="files")
    sha256 = models.CharField(max_length=64)
    kind = models.CharField(max_length=10)  # rubrics.files.sniff.KINDS
    size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)  # images, after re-encoding
    height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "sha256"], name="stored_file_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.sha256[:12]}"


class Rubric(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rubrics")
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.CASCADE, related_name="rubrics"
    )
    title = models.CharField(max_length=300)
    # Whether the judge prompt shows the task's reference deliverable.
    include_reference = models.BooleanField(default=False)
    # A project-level template (generic criteria), or a task rubric that builds on one: its
    # graders hold the template's latest published criteria first and name that version.
    is_template = models.BooleanField(default=False)
    template = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="applied_to",
        limit_choices_to={"is_template": True},
    )
    # The format the rubric came from ("healthbench", "paperbench", ...) and its unknown fields.
    extra = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class RubricVersion(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        IN_REVIEW = "in_review", "In review"
        PUBLISHED = "published", "Published"
        RETIRED = "retired", "Retired"

    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    content_hash = models.CharField(max_length=64, blank=True)
    # Bumped by every edit of the draft: a save that names an older revision is refused, so
    # two authors never silently overwrite each other.
    revision = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rubric", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["rubric", "number"], name="version_number_unique"),
            models.UniqueConstraint(
                fields=["rubric"],
                condition=Q(status__in=["draft", "in_review"]),
                name="one_draft_per_rubric",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "in_review"])
                | (~Q(content_hash="") & Q(published_at__isnull=False)),
                name="published_version_is_hashed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rubric} v{self.number}"

    @property
    def is_draft(self) -> bool:
        return self.status == self.Status.DRAFT

    @property
    def is_open(self) -> bool:
        """Not yet frozen: a draft or a version in review."""
        return self.status in (self.Status.DRAFT, self.Status.IN_REVIEW)


class CriterionGroup(models.Model):
    """A weighted node of a rubric tree (PaperBench style); criteria are its leaves."""

    version = models.ForeignKey(RubricVersion, on_delete=models.CASCADE, related_name="groups")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    title = models.TextField()
    weight = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal(1))
    # Sort key among siblings, in the same sequence as criteria positions (document order).
    position = models.PositiveIntegerField(default=0)
    key = models.CharField(max_length=200, blank=True)  # the node id of an imported tree
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["version", "position", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(weight__gte=0), name="group_weight_nonnegative"),
        ]

    def __str__(self) -> str:
        return self.title[:80]


class Criterion(models.Model):
    class Importance(models.TextChoices):
        ESSENTIAL = "essential", "Essential"
        IMPORTANT = "important", "Important"
        OPTIONAL = "optional", "Optional"
        PITFALL = "pitfall", "Pitfall"

    class Kind(models.TextChoices):
        BINARY = "binary", "Judged: met / not met"
        SCALE = "scale", "Judged: scale 1..N"
        CHECKED = "checked", "Checked by code"

    class Scope(models.TextChoices):
        OUTCOME = "outcome", "Outcome: the final answer"
        TRAJECTORY = "trajectory", "Trajectory: the whole episode at once"
        STEP = "step", "Step: each assistant turn (or each call of a tool)"

    class StepRule(models.TextChoices):
        ALL = "all", "Met when met at every step"
        SHARE = "share", "Earns the share of steps where it is met"
        ANY = "any", "Met when met at any step (for a pitfall)"

    version = models.ForeignKey(RubricVersion, on_delete=models.CASCADE, related_name="criteria")
    # The same criterion across versions: copied into each new draft, so diffs can pair them.
    lineage = models.UUIDField(default=uuid.uuid4)
    position = models.PositiveIntegerField()
    text = models.TextField()
    points = models.DecimalField(max_digits=7, decimal_places=2, default=Decimal(1))
    importance = models.CharField(
        max_length=12, choices=Importance.choices, default=Importance.IMPORTANT
    )
    tags = models.JSONField(default=list, blank=True)
    guidance = models.TextField(blank=True)
    example_met = models.TextField(blank=True)
    example_unmet = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BINARY)
    scale = models.JSONField(default=list, blank=True)  # level descriptors, 1..N
    check_spec = models.JSONField(null=True, blank=True)  # rubrics.checks data
    gate = models.BooleanField(default=False)
    # What of an episode the criterion judges (annotation.content): the final answer, the
    # whole episode, or each step; a step criterion's result for the response follows its
    # step rule, and `step_tool` (when set) limits its steps to the turns calling that tool.
    scope = models.CharField(max_length=12, choices=Scope.choices, default=Scope.OUTCOME)
    step_rule = models.CharField(max_length=8, choices=StepRule.choices, blank=True)
    step_tool = models.CharField(max_length=200, blank=True)
    group = models.ForeignKey(
        CriterionGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="criteria"
    )
    weight = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal(1))
    key = models.CharField(max_length=200, blank=True)  # an imported node or row id
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "position"],
                name="criterion_position_unique",
                deferrable=models.Deferrable.DEFERRED,
            ),
            models.CheckConstraint(condition=~Q(points=0), name="criterion_points_nonzero"),
            models.CheckConstraint(condition=Q(weight__gte=0), name="criterion_weight_nonnegative"),
            models.CheckConstraint(
                condition=Q(kind__in=["binary", "scale", "checked"]), name="criterion_kind_known"
            ),
            models.CheckConstraint(
                condition=~Q(kind="checked") | Q(check_spec__isnull=False),
                name="checked_criterion_has_check",
            ),
            models.CheckConstraint(
                condition=Q(scope__in=["outcome", "trajectory", "step"]),
                name="criterion_scope_known",
            ),
            models.CheckConstraint(
                condition=(Q(scope="step") & Q(step_rule__in=["all", "share", "any"]))
                | (~Q(scope="step") & Q(step_rule="") & Q(step_tool="")),
                name="criterion_step_rule_fits_scope",
            ),
        ]

    def __str__(self) -> str:
        return self.text[:80]

    @property
    def is_pitfall(self) -> bool:
        return self.points < 0


class Grader(models.Model):
    """Canonical JSON compiled from a published RubricVersion; its hash names it everywhere."""

    hash = models.CharField(max_length=64, unique=True)
    version = models.ForeignKey(RubricVersion, on_delete=models.PROTECT, related_name="graders")
    spec = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"grader {self.hash[:12]}"

    @property
    def short_hash(self) -> str:
        return self.hash[:12]


class Suite(models.Model):
    """A named set of a project's tasks (an eval set, a training set): picked by hand or made
    by an import (`tasks`), or picked by task tags (`tags`: every task carrying any of them).
    What gets graded is one of its frozen versions (SuiteVersion)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="suites")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tasks = models.ManyToManyField(Task, blank=True, related_name="suites")
    tags = models.JSONField(default=list, blank=True)
    # Set on the suite of one rubric that a run over that rubric grades (rubrics.suites).
    rubric = models.OneToOneField(
        "Rubric", null=True, blank=True, on_delete=models.CASCADE, related_name="suite"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="suite_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class SuiteVersion(models.Model):
    """A suite frozen like a lock file: for every task, the published grader in force when it
    was frozen. `manifest` is {task external id: grader hash}; `content_hash` is the SHA-256
    of it. Immutable: the database refuses an UPDATE of a version or of its entries
    (migration rubrics 0012)."""

    suite = models.ForeignKey(Suite, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    manifest = models.JSONField(default=dict)
    task_count = models.PositiveIntegerField(default=0)
    # The grader, when every task is graded by the same one (a rubric's suite of one, or a
    # template over many tasks): the run page then reads as that rubric's.
    sole_grader = models.ForeignKey(
        Grader, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["suite", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["suite", "number"], name="suite_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.suite} v{self.number}"

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]


class SuiteEntry(models.Model):
    """One task of a frozen suite version and the grader pinned for it (the manifest, as rows
    a query can join)."""

    version = models.ForeignKey(SuiteVersion, on_delete=models.CASCADE, related_name="entries")
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="suite_entries")
    grader = models.ForeignKey(Grader, on_delete=models.PROTECT, related_name="suite_entries")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "task"], name="suite_entry_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} -> {self.grader_id} in {self.version_id}"


class ApiToken(models.Model):
    """An API token. Only its SHA-256 is stored; the token itself is shown once, at creation."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Write"
        GRADE = "grade", "Grade (runs, reward endpoint)"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)  # the first characters, to recognise a token
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The token that made this one through the API, if any: a child never outlives or
    # out-scopes it, and stops working with it (rubrics.tokens).
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_active(self, now) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class ReviewComment(models.Model):
    """A reviewer's note on a version, anchored to one criterion (or the whole rubric)."""

    version = models.ForeignKey(RubricVersion, on_delete=models.CASCADE, related_name="comments")
    criterion = models.ForeignKey(
        Criterion, null=True, blank=True, on_delete=models.CASCADE, related_name="comments"
    )
    # A reply belongs to the thread of a top-level comment; only top-level comments resolve.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(parent__isnull=True) | Q(resolved_at__isnull=True),
                name="comment_reply_never_resolved",
            ),
        ]

    def __str__(self) -> str:
        return self.body[:80]


class RubricEvent(models.Model):
    """History: who changed what, when, on a rubric or one of its criteria."""

    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="events")
    version_number = models.PositiveIntegerField(null=True, blank=True)
    criterion_lineage = models.UUIDField(null=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=40)
    changes = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["rubric", "-at"])]

    def __str__(self) -> str:
        return f"{self.action} on {self.rubric_id}"

    def sentence(self) -> str:
        """What happened, in words (the History page)."""
        return event_text.rubric_event(self.action, self.changes)


class AuditAction(models.TextChoices):
    """What an audit event records; the database refuses any other value."""

    PROJECT_CREATED = "project_created", "Project created"
    MEMBER_ADDED = "member_added", "Member added"
    MEMBER_ROLE_CHANGED = "member_role_changed", "Member's role changed"
    MEMBER_REMOVED = "member_removed", "Member removed"
    MEMBER_INVITED = "member_invited", "Member invited"
    INVITATION_DECLINED = "invitation_declined", "Invitation declined"
    INVITATION_CANCELLED = "invitation_cancelled", "Invitation cancelled"
    VERSION_SUBMITTED = "version_submitted", "Rubric submitted for review"
    VERSION_RETURNED = "version_returned", "Rubric returned to draft"
    VERSION_APPROVED = "version_approved", "Rubric approved and published"
    VERSION_PUBLISHED = "version_published", "Rubric published without review"
    VERSION_RETIRED = "version_retired", "Rubric version retired"
    GOLD_DECIDED = "gold_decided", "Gold verdict decided"
    CALIBRATION_THRESHOLD_SET = "calibration_threshold_set", "Calibration threshold set"
    JUDGE_CREATED = "judge_created", "Judge created"
    SNAPSHOT_REQUESTED = "snapshot_requested", "Dataset snapshot requested"
    SNAPSHOT_DOWNLOADED = "snapshot_downloaded", "Dataset snapshot downloaded"
    DATASET_EXPORTED = "dataset_exported", "Dataset exported by command"
    RUBRICS_EXPORTED = "rubrics_exported", "Rubrics exported"
    TOKEN_CREATED = "token_created", "API token created"
    TOKEN_REVOKED = "token_revoked", "API token revoked"
    MODEL_PRICE_CHANGED = "model_price_changed", "Model price set"
    MODEL_PRICE_DELETED = "model_price_deleted", "Model price deleted"
    SUITE_CREATED = "suite_created", "Suite created"
    SUITE_FROZEN = "suite_frozen", "Suite version frozen"
    SUITE_CHANGED = "suite_changed", "Suite changed"
    QUEUE_CHANGED = "queue_changed", "Annotation queue changed"


class AuditEvent(models.Model):
    """One sensitive action: who, when, from where, on what. Append-only in the database.

    The actor and the project are copied as text, so deleting a user or a project keeps the
    record (their foreign keys become NULL; that is the only change the database allows).
    Details never hold secrets: a token's name, prefix and scopes, never the token."""

    Action = AuditAction

    class Source(models.TextChoices):
        WEB = "web", "Web page"
        API = "api", "API"
        COMMAND = "command", "Management command"
        ADMIN = "admin", "Django admin"
        SYSTEM = "system", "System (worker, demo loader, shell)"

    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    project_slug = models.CharField(max_length=80, blank=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.SYSTEM)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        indexes = [
            models.Index(fields=["project", "-id"], name="audit_project_newest"),
            models.Index(fields=["project", "action", "-id"], name="audit_project_action"),
            models.Index(fields=["actor", "-id"], name="audit_actor_newest"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=AuditAction.values), name="audit_action_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_username or 'system'} at {self.at:%Y-%m-%d %H:%M}"

    def details_text(self) -> str:
        """The details in words (the Audit log page)."""
        return event_text.details(self.details)
