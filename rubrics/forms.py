import json

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from rubrics.files import parts
from rubrics.models import AuditEvent, Role


class SignInForm(AuthenticationForm):
    """Django's sign-in form, with the username's length enforced before authenticating:
    Django only sets it on the widget, and a longer one reaches the failed-login records
    (django-axes, a 255-character column) as a 500."""

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        limit = self.fields["username"].max_length
        if limit and len(username) > limit:
            raise forms.ValidationError(f"A username has at most {limit} characters.")
        return username


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(
        choices=[("", "Any action"), *AuditEvent.Action.choices], required=False
    )
    actor = forms.CharField(max_length=150, required=False, label="By (username)")
    before = forms.IntegerField(min_value=1, required=False, widget=forms.HiddenInput)


class TaskForm(forms.Form):
    external_id = forms.CharField(
        max_length=200, label="External id", help_text="Your id for the task, e.g. clinic-042."
    )
    title = forms.CharField(max_length=300, required=False)
    reference = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        required=False,
        label="Reference answer (Markdown)",
    )
    tags = forms.CharField(required=False, help_text="Comma-separated.")


# The roles the messages editor offers; a task imported with another role the service accepts
# (e.g. "developer") keeps it, and the editor shows it too.
EDITOR_ROLES = ("system", "user", "assistant")


def posted_messages(data) -> list[dict]:
    """The messages editor's rows, in page order: one `role` and one `content` per row. The
    service (`validate_messages`) judges them; this only pairs them up."""
    roles, contents = data.getlist("role"), data.getlist("content")
    if len(roles) != len(contents):
        raise ValidationError(
            {"messages": f"{len(roles)} roles for {len(contents)} contents: send one of each."}
        )
    # Each row's stored image and file parts (JSON; the service checks the project holds
    # them), so saving the text keeps a message's files. Rows without them send none.
    files = data.getlist("files") or ["[]"] * len(roles)
    if len(files) != len(roles):
        raise ValidationError(
            {"messages": f"{len(roles)} roles for {len(files)} file lists: send one of each."}
        )
    out = []
    for i, (role, content, listed) in enumerate(zip(roles, contents, files, strict=True)):
        try:
            found = json.loads(listed or "[]")
        except ValueError:
            found = None
        if not isinstance(found, list):
            raise ValidationError({f"messages[{i}].content": "its file list is not valid JSON."})
        if found:
            text = [{"type": "text", "text": content}] if content else []
            out.append({"role": role, "content": [*text, *found]})
        else:
            out.append({"role": role, "content": content})
    return out


def editor_rows(messages: list[dict], errors: dict[str, list[str]] | None = None) -> list[dict]:
    """What the messages editor shows: each message with the roles its menu offers and the
    service's errors about it (keys `messages[i]`, `messages[i].role`, ...)."""
    rows = []
    for i, message in enumerate(messages):
        role = message.get("role", "user")
        roles = EDITOR_ROLES if role in EDITOR_ROLES else (*EDITOR_ROLES, role)
        mine = [
            m
            for key, found in (errors or {}).items()
            if key == f"messages[{i}]" or key.startswith(f"messages[{i}].")
            for m in found
        ]
        content = message.get("content", "")
        files = (
            [p for p in content if isinstance(p, dict) and p.get("type") != "text"]
            if isinstance(content, list)
            else []
        )
        row = {
            "role": role,
            "content": parts.only_text(content),
            "roles": roles,
            "files": parts.refs(content),
            "files_json": json.dumps(files),
        }
        rows.append({**row, "errors": mine})
    return rows


class RubricForm(forms.Form):
    title = forms.CharField(max_length=300, required=False)


class CriterionForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    points = forms.DecimalField(max_digits=7, decimal_places=2)
