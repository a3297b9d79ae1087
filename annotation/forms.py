"""Forms of annotation's HTML pages."""

from __future__ import annotations

from django import forms

from annotation.selectors import SEARCH_CHARS


class ResponseSearchForm(forms.Form):
    """The Responses page's search and filters (GET), and its cursor (`after`: the last id
    of the page before)."""

    q = forms.CharField(required=False, max_length=SEARCH_CHARS, label="Text contains")
    model = forms.CharField(required=False, max_length=200)
    task = forms.CharField(required=False, max_length=200, label="Task id")
    sample_index = forms.IntegerField(
        required=False, min_value=0, max_value=2**31 - 1, label="Sample"
    )
    after = forms.IntegerField(
        required=False, min_value=0, max_value=2**63 - 1, widget=forms.HiddenInput
    )

    def filters(self) -> dict:
        """The valid filters, for selectors.responses_matching (call after is_valid)."""
        data = self.cleaned_data
        return {
            "q": data["q"],
            "model": data["model"],
            "task": data["task"],
            "sample_index": data["sample_index"],
        }
