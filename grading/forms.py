import re

from django import forms


class JudgeForm(forms.Form):
    name = forms.CharField(max_length=100)
    base_url = forms.CharField(
        max_length=500, label="Base URL", help_text="e.g. https://api.openai.com/v1"
    )
    model = forms.CharField(max_length=200)
    # Write-only: never rendered back, not even after an error.
    api_key = forms.CharField(
        max_length=2000,
        required=False,
        label="API key",
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The project's key for this endpoint. Stored encrypted, sent only to the "
        "base URL's host, never shown again.",
    )
    api_key_env = forms.CharField(
        max_length=100,
        required=False,
        label="Or: deployment key variable",
        help_text="Only a variable the operator bound to this host (ASSAY_JUDGE_KEY_VARIABLES).",
    )
    max_concurrency = forms.IntegerField(
        min_value=1, max_value=1024, initial=8, label="Max in flight (all workers)"
    )
    requests_per_minute = forms.IntegerField(min_value=0, initial=0, help_text="0: no limit.")
    tokens_per_minute = forms.IntegerField(min_value=0, initial=0, help_text="0: no limit.")
    temperature = forms.FloatField(min_value=0, max_value=2, initial=0)
    use_json_schema = forms.BooleanField(required=False, initial=True, label="Structured output")
    accepts_images = forms.BooleanField(
        required=False,
        label="Sees images",
        help_text="A vision model: images and a PDF's first pages are sent to it as images. "
        "A judge that cannot see them is told an image was there.",
    )
    accepts_files = forms.BooleanField(
        required=False,
        label="Reads files",
        help_text="Documents (PDF, Word, Excel, PowerPoint, CSV) are also sent as file parts. "
        "Every judge reads their text as Assay converts it.",
    )


class GraderPicker(forms.Widget):
    """One published rubric version, picked by searching (a project may hold 5,000): a search
    box (`<name>_q`) that asks `search_url` (htmx) for at most a few matches, shown as radio
    buttons named as the field. `matches` are the graders listed when the page is drawn.
    Without JavaScript the box is a plain text field for a hash, its prefix or a name, sent
    with the form (rubrics.selectors.grader_picked). Its value: (picked hash, typed text)."""

    template_name = "grading/_grader_picker.html"

    def __init__(self, *args, search_url: str = "", matches=(), more: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.search_url, self.matches, self.more = search_url, matches, more

    def value_from_datadict(self, data, files, name):
        return (data.get(name, ""), data.get(f"{name}_q", ""))

    def value_omitted_from_data(self, data, files, name):
        return name not in data and f"{name}_q" not in data

    def get_context(self, name, value, attrs):
        picked, typed = value if isinstance(value, tuple | list) else (value or "", "")
        context = super().get_context(name, picked, attrs)
        listed = {g.hash for g in self.matches}
        context["widget"].update(
            search_url=self.search_url,
            matches=self.matches,
            more=self.more,
            typed=typed,
            # A value posted back (after an error or an estimate) stays picked, listed or not;
            # unless text was typed: a radio the box does not list gives way to the box.
            other=picked if picked and picked not in listed and not typed else "",
        )
        return context


class GraderField(forms.Field):
    """The picker's (picked hash, typed text), stripped; a hash is 64 characters at most and
    the box is read as far as a search reads it."""

    widget = GraderPicker

    def to_python(self, value):
        picked, typed = value if isinstance(value, tuple | list) else (value or "", "")
        picked, typed = str(picked or "").strip(), str(typed or "").strip()
        if len(picked) > 64:
            raise forms.ValidationError("A grader hash has 64 characters.")
        if len(typed) > 200:
            raise forms.ValidationError("Type at most 200 characters to search.")
        return picked, typed


class RunForm(forms.Form):
    suite_version = forms.ChoiceField(
        required=False, label="What to grade: a suite (its newest version)"
    )
    grader = GraderField(
        required=False,
        label="Or one published rubric version",
        help_text="Search by rubric title, task external id or grader hash and pick one, or "
        "type a grader hash (its first 12 characters do) and start; set the suite above to "
        "“—” to grade one rubric version.",
    )
    models = forms.CharField(
        required=False,
        max_length=5000,
        help_text="Only these models' responses, comma-separated (empty: all).",
    )
    sample_indices = forms.CharField(
        required=False,
        max_length=1000,
        label="Sample indices",
        help_text="Only these sample indices, comma-separated (empty: all).",
    )
    judge = forms.ChoiceField(label="Judge (lead)")
    panel = forms.MultipleChoiceField(
        required=False,
        label="More judges (panel)",
        help_text="The run's verdict is the panel's majority; a tie goes to the lead judge.",
    )
    mode = forms.ChoiceField(
        choices=[
            ("per_criterion", "One judge call per criterion"),
            ("batched", "One call per response for all criteria"),
        ],
        initial="per_criterion",
    )
    samples = forms.IntegerField(
        min_value=1,
        max_value=16,
        initial=1,
        help_text="Judge samples per item (needs temperature > 0): majority or mean.",
    )
    use_cache = forms.BooleanField(
        required=False, initial=True, label="Use the cache (identical work is not paid twice)"
    )

    def __init__(
        self, *args, suite_versions=(), judges=(), search_url="", matches=(), more=False, **kwargs
    ):
        super().__init__(*args, **kwargs)
        # Suites are few: a select. Graders may be thousands: searched, never all listed.
        self.fields["suite_version"].choices = [("", "— (one rubric version, below)")] + [
            (str(v.pk), f"{v.suite.name} v{v.number} ({v.task_count} tasks)")
            for v in suite_versions
        ]
        self.fields["grader"].widget = GraderPicker(
            search_url=search_url, matches=matches, more=more
        )
        if suite_versions:
            self.fields["suite_version"].initial = str(suite_versions[0].pk)
        elif matches:  # as the list used to: with no suite, the first rubric is picked
            self.fields["grader"].initial = matches[0].hash
        self.fields["judge"].choices = [(str(j.pk), str(j)) for j in judges]
        self.fields["panel"].choices = [(str(j.pk), str(j)) for j in judges]

    def clean(self):
        data = super().clean()
        grader = any(data.get("grader") or ())  # a radio picked or text typed
        if bool(data.get("suite_version")) == grader:
            raise forms.ValidationError(
                "Pick a suite, or set the suite to “—” and pick one rubric version."
                if grader
                else "Pick a suite or one rubric version to grade."
            )
        return data


class SnapshotForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="Letters, digits and '-'; never reused.")
    format = forms.ChoiceField()
    license = forms.CharField(max_length=100, required=False, help_text="e.g. CC-BY-4.0")
    run = forms.ChoiceField(
        required=False,
        help_text="For preference pairs and scores; narrows verdicts to one run.",
    )
    min_margin = forms.FloatField(min_value=0, max_value=1, initial=0.1, required=False)
    suite_version = forms.ChoiceField(
        required=False,
        label="Suite version",
        help_text="For the suite card; narrows HealthBench, OpenAI RFT and verl exports to the "
        "tasks and graders a suite version pins, and names it in each row.",
    )

    def __init__(self, *args, formats=(), runs=(), versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["format"].choices = [(key, f"{key}: {text}") for key, (text, _) in formats]
        self.fields["run"].choices = [("", "—")] + [
            (str(r.pk), f"#{r.pk} {r.target_label}") for r in runs
        ]
        self.fields["suite_version"].choices = [("", "—")] + [
            (str(v.pk), f"{v.suite.name} v{v.number} ({v.task_count} tasks)") for v in versions
        ]


# A project with at most this many tasks gets a checkbox per task on the suite forms; any
# project also takes external ids in a text box (one per line), which is how 5,000 are picked.
SUITE_CHECKBOXES = 200


def _ids_in(text: str) -> list[str]:
    """External ids from a text box: one per line (commas and spaces also separate them,
    since an external id holds neither)."""
    return [part for part in re.split(r"[\s,]+", text or "") if part]


class SuiteForm(forms.Form):
    """Make or change a suite: its name, description, the tasks picked by hand and the task
    tags that add every task carrying one. `tasks` (checkboxes) is only offered when the
    project has few tasks; `external_ids` always is."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )
    tasks = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Tasks"
    )
    external_ids = forms.CharField(
        required=False,
        max_length=2_000_000,
        label="Tasks by external id",
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "one external id per line"}),
        help_text="One per line: paste as many as you like.",
    )
    tags = forms.CharField(
        required=False,
        max_length=2000,
        label="Task tags",
        help_text="Comma-separated: every task carrying one of them belongs to the suite, "
        "now and when tagged later.",
    )

    def __init__(self, *args, tasks=None, **kwargs):
        super().__init__(*args, **kwargs)
        # [(id, external id, title)] when the project is small enough for checkboxes
        self.task_choices = tasks
        if tasks is None:
            del self.fields["tasks"]
        else:
            self.fields["tasks"].choices = [
                (str(pk), f"{external_id} — {title}") for pk, external_id, title in tasks
            ]

    def clean_external_ids(self) -> list[str]:
        return _ids_in(self.cleaned_data.get("external_ids", ""))

    def clean_tags(self) -> list[str]:
        raw = self.cleaned_data.get("tags", "")
        return sorted({t.strip() for t in raw.split(",") if t.strip()})


class SuiteEditForm(SuiteForm):
    """As SuiteForm, and a text box of external ids to take out. With checkboxes, the ones
    ticked are the hand-picked tasks (`picked` says the checkboxes were on the page)."""

    remove_ids = forms.CharField(
        required=False,
        max_length=2_000_000,
        label="Take out by external id",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "one external id per line"}),
    )
    picked = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean_remove_ids(self) -> list[str]:
        return _ids_in(self.cleaned_data.get("remove_ids", ""))
