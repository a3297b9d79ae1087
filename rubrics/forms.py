from django import forms
from django.contrib.auth.forms import AuthenticationForm

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
    system = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, label="System message"
    )
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), label="User message")
    reference = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        required=False,
        label="Reference answer (Markdown)",
    )
    tags = forms.CharField(required=False, help_text="Comma-separated.")

    def messages(self) -> list[dict]:
        data = self.cleaned_data
        messages = [{"role": "system", "content": data["system"]}] if data["system"] else []
        return [*messages, {"role": "user", "content": data["prompt"]}]


class RubricForm(forms.Form):
    title = forms.CharField(max_length=300, required=False)


class CriterionForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    points = forms.DecimalField(max_digits=7, decimal_places=2)
