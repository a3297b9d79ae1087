"""The API tokens page: create (the key is shown once), list, revoke."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from rubrics import audit, tokens
from rubrics.models import ApiToken


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Where it is used, e.g. 'verl trainer'.")
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices, widget=forms.CheckboxSelectMultiple, initial=["read"]
    )
    expires_in_days = forms.IntegerField(min_value=1, max_value=tokens.MAX_DAYS, initial=90)


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            token, raw = tokens.token_create(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            created = {"token": token, "raw": raw}
            form = TokenForm()
    return render(
        request,
        "rubrics/tokens.html",
        {
            "tokens": tokens.user_tokens(request.user),
            "form": form,
            "created": created,
            # Token events belong to no project: their owner reads them here (staff: admin).
            "events": audit.own_token_events(request.user),
        },
    )


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(tokens.user_tokens(request.user), pk=pk)
    if tokens.token_revoke(token=token, actor=request.user):
        messages.success(request, f"Token {token.name} revoked: it no longer works.")
    return redirect("api_tokens_page")
