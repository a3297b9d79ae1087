"""The roles matrix: every page and every API endpoint, and what each persona gets from it.

One row per operation: a page (by its URL name) or an API endpoint (by its route in
`assay/api_urls.py`), its method, its URL in the world `build_world` makes, what it sends,
and the outcome for each of the seven personas. tests/test_roles_matrix.py fails on any
named URL pattern, any API method and any operation of the OpenAPI schema without a row
here, then asks each row of each persona; tests/test_api_isolation.py asks every row with
another project's objects.

Outcomes. Anonymous callers are sent to the sign-in page (`LOGIN`) by a page and answered
401 by the API; an outsider is told a project's objects do not exist (404); a role the rules
do not allow gets 403. A role they allow gets past the permission check: a page shows (200)
or, after a write, redirects (302); an API read answers 200, and a write with an empty body
400 (the door checks permission before it reads the body), a delete of something in use
409, a delete of a fresh object 204. Each persona calls in a fresh copy of the world.
"""

from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass, field
from types import SimpleNamespace

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotation import import_jobs
from annotation import services as annotation_services
from annotation.models import Response, Verdict
from grading import services as grading_services
from grading.datasets import snapshots
from grading.models import JudgeCall, ModelPrice
from rubrics import services as rubric_services
from rubrics import suites, tokens
from rubrics.models import Criterion, Invitation
from tests import factories
from tests.test_api import api_client

ROLES = ("admin", "author", "annotator", "reviewer", "engineer")
PERSONAS = ("anonymous", "outsider", *ROLES)
EVERYONE = set(ROLES)
EDITORS = {"admin", "author"}
RESULTS = {"admin", "author", "reviewer", "engineer"}  # annotators stay blind to the judge
OPERATORS = {"admin", "engineer"}  # import responses, start and cancel runs
ADMINS = {"admin"}  # members and judges
ANNOTATORS = {"annotator"}  # grade queue items, blind
# Which model wrote a response, and its sample: annotators grade blind (tests/test_blindness.py)
SEE_MODELS = {"admin", "author", "reviewer", "engineer"}
ADJUDICATORS = {"admin", "reviewer"}  # gold verdicts
PUBLISHERS = {"admin", "author", "reviewer"}  # retire published versions
REVIEWERS = {"reviewer"}  # approve what an author submitted
COMMENTERS = {"admin", "reviewer"}  # comment on a version in review
DISCUSSERS = {"admin", "author", "reviewer"}  # reply to review comments; the review inbox
SUITE_MAKERS = {"admin", "author", "engineer"}  # make suites and freeze their versions

LOGIN = "login"  # a redirect (302) to the sign-in page
Outcome = int | str


def members_only(allowed: set[str], ok: Outcome, *, anonymous: Outcome = 401) -> dict:
    """A project's API endpoint: its members by role, outsiders do not see the project."""
    return {
        "anonymous": anonymous,
        "outsider": 404,
        **{role: ok if role in allowed else 403 for role in ROLES},
    }


def members_page(allowed: set[str], ok: Outcome) -> dict:
    """A project's page: as `members_only`, but anonymous visitors are sent to sign in."""
    return members_only(allowed, ok, anonymous=LOGIN)


def any_user(ok: Outcome, anonymous: Outcome = 401) -> dict:
    """Not a project's: every signed-in user, member or not, gets the same."""
    return {"anonymous": anonymous, "outsider": ok, **dict.fromkeys(ROLES, ok)}


@dataclass(frozen=True)
class Row:
    kind: str  # "page" or "api"
    method: str
    pattern: str  # a page's URL name; an endpoint's route as written in assay/api_urls.py
    url: str  # a path with {names} of the world; {new_<name>}: a fresh object per call
    expected: dict[str, Outcome] = field(hash=False)
    body: dict | None = field(default=None, hash=False)
    body_format: str = "json"  # the API's; pages post a form

    def __str__(self) -> str:
        return f"{self.kind} {self.method.upper()} {self.pattern}"


def page(method: str, name: str, url: str, expected: dict, body: dict | None = None) -> Row:
    return Row("page", method, name, url, expected, body)


def api(method: str, route: str, url: str, expected: dict, body_format: str = "json") -> Row:
    return Row("api", method, route, url, expected, body_format=body_format)


SLUG = "projects/<slug:slug>/"
ROWS = [
    # --- Outside any project: the site, accounts, the API's description ----------------------
    page("get", "home", "/", any_user(200, anonymous=LOGIN)),
    # A form with a blank field answers with the form again: signed-in users make projects and
    # tokens, and change their password; anyone may sign up and sign in.
    page("post", "home", "/", any_user(200, anonymous=LOGIN), {"name": ""}),
    # Sign-up is closed unless the operator opens it (ASSAY_SIGNUP; tests/test_signup.py).
    page("get", "signup", "/signup/", any_user(404, anonymous=404)),
    page("post", "signup", "/signup/", any_user(404, anonymous=404), {"username": ""}),
    page("get", "login", "/login/", any_user(200, anonymous=200)),
    page("post", "login", "/login/", any_user(200, anonymous=200), {"username": ""}),
    # Signing out ends on the sign-in page, signed in or not.
    page("post", "logout", "/logout/", any_user(LOGIN, anonymous=LOGIN)),
    page("get", "password_change", "/account/password/", any_user(200, anonymous=LOGIN)),
    page(
        "post",
        "password_change",
        "/account/password/",
        any_user(200, anonymous=LOGIN),
        {"old_password": ""},
    ),
    page("get", "password_change_done", "/account/password/done/", any_user(200, anonymous=LOGIN)),
    # The API's description holds no data: it is public, like the docs that render it.
    page("get", "schema", "/api/schema/", any_user(200, anonymous=200)),
    page("get", "api_docs", "/api/docs/", any_user(200, anonymous=200)),
    page("get", "api_redoc", "/api/redoc/", any_user(200, anonymous=200)),
    # --- Sign-in tokens: each user sees only their own --------------------------------------
    api("post", "auth/token/", "/api/auth/token/", any_user(400, anonymous=400)),
    page("get", "api_tokens_page", "/tokens/", any_user(200, anonymous=LOGIN)),
    page("post", "api_tokens_page", "/tokens/", any_user(200, anonymous=LOGIN), {"name": ""}),
    api("get", "tokens/", "/api/tokens/", any_user(200)),
    api("post", "tokens/", "/api/tokens/", any_user(400)),
    # Someone else's token is not found.
    page(
        "post", "api_token_revoke_page", "/tokens/{token}/revoke/", any_user(404, anonymous=LOGIN)
    ),
    api("get", "tokens/<int:pk>/", "/api/tokens/{token}/", any_user(404)),
    api("delete", "tokens/<int:pk>/", "/api/tokens/{token}/", any_user(404)),
    # --- Projects and their members ---------------------------------------------------------
    api("get", "projects/", "/api/projects/", any_user(200)),
    api("post", "projects/", "/api/projects/", any_user(400)),
    page("get", "project", "/p/{slug}/", members_page(EVERYONE, 200)),
    api("get", SLUG, "/api/projects/{slug}/", members_only(EVERYONE, 200)),
    api("patch", SLUG, "/api/projects/{slug}/", members_only(ADMINS, 400)),
    # The project holds published work, so even its admin may not delete it.
    api("delete", SLUG, "/api/projects/{slug}/", members_only(ADMINS, 409)),
    page("get", "members", "/p/{slug}/members/", members_page(EVERYONE, 200)),
    # Admins invite: the same answer whether or not a user is named "nobody".
    page(
        "post",
        "members",
        "/p/{slug}/members/",
        members_page(ADMINS, 302),
        {"username": "nobody", "role": "author"},
    ),
    page(
        "post",
        "invitation_cancel",
        "/p/{slug}/invitations/{invited}/cancel/",
        members_page(ADMINS, 302),
    ),
    api(
        "get", SLUG + "invitations/", "/api/projects/{slug}/invitations/", members_only(ADMINS, 200)
    ),
    api(
        "delete",
        SLUG + "invitations/<str:username>/",
        "/api/projects/{slug}/invitations/{invited}/",
        members_only(ADMINS, 204),
    ),
    # Only the invited user answers an invitation; anyone else's is not found.
    page("post", "invitation_accept", "/invitations/{invitation}/accept/", any_user(404, LOGIN)),
    page("post", "invitation_decline", "/invitations/{invitation}/decline/", any_user(404, LOGIN)),
    api("get", "invitations/", "/api/invitations/", any_user(200)),
    api(
        "post",
        "invitations/<int:pk>/accept/",
        "/api/invitations/{invitation}/accept/",
        any_user(404),
    ),
    api(
        "post",
        "invitations/<int:pk>/decline/",
        "/api/invitations/{invitation}/decline/",
        any_user(404),
    ),
    api("get", SLUG + "members/", "/api/projects/{slug}/members/", members_only(EVERYONE, 200)),
    api("post", SLUG + "members/", "/api/projects/{slug}/members/", members_only(ADMINS, 400)),
    api(
        "get",
        SLUG + "members/<str:username>/",
        "/api/projects/{slug}/members/{member}/",
        members_only(EVERYONE, 200),
    ),
    api(
        "patch",
        SLUG + "members/<str:username>/",
        "/api/projects/{slug}/members/{member}/",
        members_only(ADMINS, 400),
    ),
    page(
        "post",
        "member_remove",
        "/p/{slug}/members/{annotator}/remove/",
        members_page(ADMINS, 302),
    ),
    # The admin is the last admin: they stay.
    api(
        "delete",
        SLUG + "members/<str:username>/",
        "/api/projects/{slug}/members/{last_admin}/",
        members_only(ADMINS, 409),
    ),
    page("get", "audit_log", "/p/{slug}/audit/", members_page(ADMINS, 200)),
    api("get", SLUG + "audit/", "/api/projects/{slug}/audit/", members_only(ADMINS, 200)),
    # --- Tasks and their references ---------------------------------------------------------
    api("get", SLUG + "tasks/", "/api/projects/{slug}/tasks/", members_only(EVERYONE, 200)),
    page("get", "task_new", "/p/{slug}/tasks/new/", members_page(EDITORS, 200)),
    page(
        "post",
        "task_new",
        "/p/{slug}/tasks/new/",
        members_page(EDITORS, 200),
        {"external_id": ""},
    ),
    api("post", SLUG + "tasks/", "/api/projects/{slug}/tasks/", members_only(EDITORS, 400)),
    page("get", "tasks_import", "/p/{slug}/imports/tasks/", members_page(EDITORS, 200)),
    page("post", "tasks_import", "/p/{slug}/imports/tasks/", members_page(EDITORS, 200), {}),
    api(
        "post",
        SLUG + "imports/tasks/",
        "/api/projects/{slug}/imports/tasks/",
        members_only(EDITORS, 400),
        body_format="multipart",
    ),
    page("get", "task", "/p/{slug}/tasks/{task}/", members_page(EVERYONE, 200)),
    # The task has responses: its prompt is frozen, and the page says so (a redirect).
    page(
        "post",
        "task_edit",
        "/p/{slug}/tasks/{task}/edit/",
        members_page(EDITORS, 302),
        {"role": "user", "content": "Another prompt."},
    ),
    page(
        "post",
        "markdown_preview",
        "/p/{slug}/preview/markdown/",
        members_page(EDITORS, 200),
        {"content": "**Rest.**"},
    ),
    api(
        "get",
        SLUG + "tasks/<str:external_id>/",
        "/api/projects/{slug}/tasks/{task}/",
        members_only(EVERYONE, 200),
    ),
    api(
        "patch",
        SLUG + "tasks/<str:external_id>/",
        "/api/projects/{slug}/tasks/{task}/",
        members_only(EDITORS, 400),
    ),
    # The task has responses: it stays.
    api(
        "delete",
        SLUG + "tasks/<str:external_id>/",
        "/api/projects/{slug}/tasks/{task}/",
        members_only(EDITORS, 409),
    ),
    page(
        "post",
        "reference_add",
        "/p/{slug}/tasks/{task}/references/",
        members_page(EDITORS, 302),
        {"body": "Call emergency services."},
    ),
    api(
        "post",
        SLUG + "tasks/<str:external_id>/references/",
        "/api/projects/{slug}/tasks/{task}/references/",
        members_only(EDITORS, 400),
        body_format="multipart",
    ),
    api("get", "references/<int:pk>/", "/api/references/{reference}/", members_only(EVERYONE, 200)),
    api(
        "patch", "references/<int:pk>/", "/api/references/{reference}/", members_only(EDITORS, 400)
    ),
    api(
        "delete",
        "references/<int:pk>/",
        "/api/references/{new_reference}/",
        members_only(EDITORS, 204),
    ),
    # Every member may download a reference's file; no one else, and never from a public URL.
    page("get", "reference_file", "/references/{reference}/file/", members_page(EVERYONE, 200)),
    # A stored file (a task's, a reference's, a response's): every member, by its hash.
    page("get", "file", "/p/{slug}/files/{stored_file}/", members_page(EVERYONE, 200)),
    api(
        "get",
        "references/<int:pk>/file/",
        "/api/references/{reference}/file/",
        members_only(EVERYONE, 200),
    ),
    # --- Rubrics: writing them --------------------------------------------------------------
    api("get", SLUG + "rubrics/", "/api/projects/{slug}/rubrics/", members_only(EVERYONE, 200)),
    api("post", SLUG + "rubrics/", "/api/projects/{slug}/rubrics/", members_only(EDITORS, 400)),
    page("post", "rubric_new", "/p/{slug}/tasks/{task}/rubrics/", members_page(EDITORS, 302), {}),
    page(
        "post",
        "template_new",
        "/p/{slug}/templates/new/",
        members_page(EDITORS, 302),
        {"title": "Safety basics"},
    ),
    page("post", "template_apply", "/rubrics/{template}/apply/", members_page(EDITORS, 302), {}),
    page("get", "rubrics_import", "/p/{slug}/rubrics/import/", members_page(EDITORS, 200)),
    page(
        "post",
        "rubrics_import",
        "/p/{slug}/rubrics/import/",
        members_page(EDITORS, 200),
        {"format": "healthbench"},
    ),
    page("get", "rubrics_export", "/p/{slug}/rubrics/export/", members_page(EVERYONE, 200)),
    page("get", "rubric", "/rubrics/{rubric}/", members_page(EVERYONE, 200)),
    api("get", "rubrics/<int:pk>/", "/api/rubrics/{rubric}/", members_only(EVERYONE, 200)),
    page("post", "rubric_edit", "/rubrics/{rubric}/edit/", members_page(EDITORS, 302), {}),
    api("patch", "rubrics/<int:pk>/", "/api/rubrics/{rubric}/", members_only(EDITORS, 400)),
    # The rubric was published: it stays.
    api("delete", "rubrics/<int:pk>/", "/api/rubrics/{rubric}/", members_only(EDITORS, 409)),
    page(
        "post",
        "rubric_settings",
        "/rubrics/{edited_rubric}/settings/",
        members_page(EDITORS, 302),
        {"include_reference": "on"},
    ),
    # The draft is the rubric's only version: delete the rubric instead.
    api(
        "delete",
        "rubrics/<int:pk>/draft/",
        "/api/rubrics/{draft_rubric}/draft/",
        members_only(EDITORS, 409),
    ),
    page(
        "post",
        "criterion_add",
        "/rubrics/{edited_rubric}/criteria/",
        members_page(EDITORS, 200),
        {"text": "New one", "points": "1"},
    ),
    api(
        "post",
        "rubrics/<int:pk>/draft/criteria/",
        "/api/rubrics/{draft_rubric}/draft/criteria/",
        members_only(EDITORS, 400),
    ),
    api(
        "put",
        "rubrics/<int:pk>/draft/criteria/",
        "/api/rubrics/{rubric}/draft/criteria/",
        members_only(EDITORS, 400),
    ),
    api("get", "criteria/<int:pk>/", "/api/criteria/{criterion}/", members_only(EVERYONE, 200)),
    page(
        "post",
        "criterion_update",
        "/criteria/{draft_criterion}/",
        members_page(EDITORS, 200),
        {"text": "Edited", "points": "2"},
    ),
    api("patch", "criteria/<int:pk>/", "/api/criteria/{criterion}/", members_only(EDITORS, 400)),
    page(
        "post",
        "criterion_delete",
        "/criteria/{draft_criterion}/delete/",
        members_page(EDITORS, 200),
    ),
    # The criterion is of a published version, which never changes.
    api("delete", "criteria/<int:pk>/", "/api/criteria/{criterion}/", members_only(EDITORS, 409)),
    page(
        "post",
        "criterion_move",
        "/criteria/{draft_criterion}/move/up/",
        members_page(EDITORS, 200),
    ),
    page(
        "post",
        "group_update",
        "/groups/{group}/",
        members_page(EDITORS, 200),
        {"title": "Safety", "weight": "2"},
    ),
    page("get", "rubric_diff", "/rubrics/{edited_rubric}/diff/", members_page(EVERYONE, 200)),
    api(
        "get", "rubrics/<int:pk>/diff/", "/api/rubrics/{rubric}/diff/", members_only(EVERYONE, 200)
    ),
    page("get", "rubric_history", "/rubrics/{edited_rubric}/history/", members_page(EVERYONE, 200)),
    api(
        "get",
        "rubrics/<int:pk>/history/",
        "/api/rubrics/{rubric}/history/",
        members_only(EVERYONE, 200),
    ),
    page("get", "rubric_try", "/rubrics/{edited_rubric}/try/", members_page(RESULTS, 200)),
    page(
        "post",
        "rubric_try",
        "/rubrics/{edited_rubric}/try/",
        members_page(RESULTS, 200),
        {"action": "preview", "response": "Drink water."},
    ),
    # --- Rubrics: review and publishing -----------------------------------------------------
    page("post", "rubric_submit", "/rubrics/{edited_rubric}/submit/", members_page(EDITORS, 302)),
    # The empty draft cannot be submitted, and it is not in review: allowed roles get 400.
    api(
        "post",
        "rubrics/<int:pk>/submit/",
        "/api/rubrics/{draft_rubric}/submit/",
        members_only(EDITORS, 400),
    ),
    page("post", "rubric_reopen", "/rubrics/{review_rubric}/reopen/", members_page(EDITORS, 302)),
    api(
        "post",
        "rubrics/<int:pk>/reopen/",
        "/api/rubrics/{draft_rubric}/reopen/",
        members_only(EDITORS, 400),
    ),
    page(
        "post", "rubric_approve", "/rubrics/{review_rubric}/approve/", members_page(REVIEWERS, 302)
    ),
    api(
        "post",
        "rubrics/<int:pk>/approve/",
        "/api/rubrics/{draft_rubric}/approve/",
        members_only(REVIEWERS, 400),
    ),
    page(
        "post",
        "rubric_retire",
        "/rubrics/{rubric}/versions/1/retire/",
        members_page(PUBLISHERS, 302),
    ),
    # Version 1 of the draft rubric is a draft: only a published version is retired.
    api(
        "post",
        "rubrics/<int:pk>/versions/<int:number>/retire/",
        "/api/rubrics/{draft_rubric}/versions/1/retire/",
        members_only(PUBLISHERS, 400),
    ),
    api(
        "get",
        "rubrics/<int:pk>/comments/",
        "/api/rubrics/{review_rubric}/comments/",
        members_only(EVERYONE, 200),
    ),
    page(
        "post",
        "comment_add",
        "/rubrics/{review_rubric}/comments/",
        members_page(COMMENTERS, 302),
        {"body": "Please split this criterion."},
    ),
    api(
        "post",
        "rubrics/<int:pk>/comments/",
        "/api/rubrics/{review_rubric}/comments/",
        members_only(COMMENTERS, 400),
    ),
    page("get", "review_inbox", "/p/{slug}/reviews/", members_page(DISCUSSERS, 200)),
    api("get", SLUG + "reviews/", "/api/projects/{slug}/reviews/", members_only(DISCUSSERS, 200)),
    page(
        "post",
        "comment_reply",
        "/comments/{comment}/replies/",
        members_page(DISCUSSERS, 302),
        {"body": "Split how?"},
    ),
    # An empty body: an allowed role is told to write the reply.
    api(
        "post",
        "comments/<int:pk>/replies/",
        "/api/comments/{comment}/replies/",
        members_only(DISCUSSERS, 400),
    ),
    page("post", "comment_resolve", "/comments/{comment}/resolve/", members_page(EDITORS, 302)),
    # An empty body: an allowed role resolves the comment.
    api(
        "post",
        "comments/<int:pk>/resolve/",
        "/api/comments/{comment}/resolve/",
        members_only(EDITORS, 200),
    ),
    # --- Graders, judges and model prices ---------------------------------------------------
    page("get", "grader", "/graders/{grader}/", members_page(EVERYONE, 200)),
    api(
        "get",
        "graders/<str:grader_hash>/",
        "/api/graders/{grader}/",
        members_only(EVERYONE, 200),
    ),
    api(
        "post",
        "graders/<str:grader_hash>/score/",
        "/api/graders/{grader}/score/",
        members_only(OPERATORS, 400),
    ),
    # One reward URL per suite (newest version, or a version by number): as the grader's.
    api(
        "post", "suites/<int:pk>/score/", "/api/suites/{suite}/score/", members_only(OPERATORS, 400)
    ),
    api(
        "post",
        "suites/<int:pk>/versions/<int:number>/score/",
        "/api/suites/{suite}/versions/{suite_version}/score/",
        members_only(OPERATORS, 400),
    ),
    page("get", "judges", "/p/{slug}/judges/", members_page(RESULTS, 200)),
    page("post", "judges", "/p/{slug}/judges/", members_page(ADMINS, 200), {"name": ""}),
    # One tiny request to the world's judge (nothing listens there): its outcome, shown.
    page("post", "judge_test", "/judges/{judge}/test/", members_page(OPERATORS, 200)),
    api("get", SLUG + "judges/", "/api/projects/{slug}/judges/", members_only(RESULTS, 200)),
    api("post", SLUG + "judges/", "/api/projects/{slug}/judges/", members_only(ADMINS, 400)),
    api("get", "judges/<int:pk>/", "/api/judges/{judge}/", members_only(RESULTS, 200)),
    api("patch", "judges/<int:pk>/", "/api/judges/{judge}/", members_only(ADMINS, 400)),
    # A test is an outcome, whatever the judge does: 200 (nothing listens at the world's judge).
    api("post", "judges/<int:pk>/test/", "/api/judges/{judge}/test/", members_only(OPERATORS, 200)),
    # The judge has a run: it stays.
    api("delete", "judges/<int:pk>/", "/api/judges/{judge}/", members_only(ADMINS, 409)),
    # Prices hold for every project: only staff (none of the personas) change them.
    api("get", "model-prices/", "/api/model-prices/", any_user(200)),
    api("post", "model-prices/", "/api/model-prices/", any_user(403)),
    api("get", "model-prices/<int:pk>/", "/api/model-prices/{price}/", any_user(200)),
    api("patch", "model-prices/<int:pk>/", "/api/model-prices/{price}/", any_user(403)),
    api("delete", "model-prices/<int:pk>/", "/api/model-prices/{price}/", any_user(403)),
    # --- Responses and their imports --------------------------------------------------------
    page("get", "responses", "/p/{slug}/responses/", members_page(SEE_MODELS, 200)),
    page("post", "responses", "/p/{slug}/responses/", members_page(OPERATORS, 200), {}),
    page("get", "response", "/responses/{response}/", members_page(SEE_MODELS, 200)),
    api(
        "get", SLUG + "responses/", "/api/projects/{slug}/responses/", members_only(SEE_MODELS, 200)
    ),
    api(
        "post",
        SLUG + "responses/import/",
        "/api/projects/{slug}/responses/import/",
        members_only(OPERATORS, 400),
        body_format="multipart",
    ),
    api(
        "get",
        SLUG + "responses/models/",
        "/api/projects/{slug}/responses/models/",
        members_only(SEE_MODELS, 200),
    ),
    api("get", "responses/<int:pk>/", "/api/responses/{response}/", members_only(SEE_MODELS, 200)),
    api("get", SLUG + "imports/", "/api/projects/{slug}/imports/", members_only(OPERATORS, 200)),
    api(
        "post",
        SLUG + "imports/",
        "/api/projects/{slug}/imports/",
        members_only(OPERATORS, 400),
        body_format="multipart",
    ),
    page("get", "import_job", "/imports/{import_job}/", members_page(OPERATORS, 200)),
    api("get", "imports/<int:pk>/", "/api/imports/{import_job}/", members_only(OPERATORS, 200)),
    # --- Runs, scores and verdicts ----------------------------------------------------------
    page("get", "runs", "/p/{slug}/runs/", members_page(RESULTS, 200)),
    page("post", "runs", "/p/{slug}/runs/", members_page(OPERATORS, 200), {}),
    # The run form's grader search: those who may start a run.
    page("get", "run_grader_search", "/p/{slug}/runs/graders/", members_page(OPERATORS, 200)),
    api("get", SLUG + "runs/", "/api/projects/{slug}/runs/", members_only(RESULTS, 200)),
    api("post", SLUG + "runs/", "/api/projects/{slug}/runs/", members_only(OPERATORS, 400)),
    page("get", "run", "/runs/{run}/", members_page(RESULTS, 200)),
    api("get", "runs/<int:pk>/", "/api/runs/{run}/", members_only(RESULTS, 200)),
    page("post", "run_cancel", "/runs/{run}/cancel/", members_page(OPERATORS, 302)),
    api("post", "runs/<int:pk>/cancel/", "/api/runs/{run}/cancel/", members_only(OPERATORS, 200)),
    page("post", "run_retry_failed", "/runs/{run}/retry-failed/", members_page(OPERATORS, 302)),
    # The run has not finished, so an allowed retry is refused without a change.
    api(
        "post",
        "runs/<int:pk>/retry-failed/",
        "/api/runs/{run}/retry-failed/",
        members_only(OPERATORS, 400),
    ),
    page("post", "run_resume", "/runs/{run}/resume/", members_page(OPERATORS, 302)),
    api("post", "runs/<int:pk>/resume/", "/api/runs/{run}/resume/", members_only(OPERATORS, 200)),
    page("get", "run_compare", "/runs/{run}/compare/{run}/", members_page(RESULTS, 200)),
    # Leaderboards: models and scores, so annotators never see them.
    api(
        "get",
        "runs/<int:pk>/leaderboard/",
        "/api/runs/{run}/leaderboard/",
        members_only(RESULTS, 200),
    ),
    api(
        "get",
        "suites/<int:pk>/leaderboard/",
        "/api/suites/{suite}/leaderboard/",
        members_only(RESULTS, 200),
    ),
    api(
        "get",
        "runs/<int:pk>/compare/<int:other_id>/",
        "/api/runs/{run}/compare/{run}/",
        members_only(RESULTS, 200),
    ),
    api("get", "runs/<int:pk>/scores/", "/api/runs/{run}/scores/", members_only(RESULTS, 200)),
    page("get", "score", "/runs/{run}/scores/{score}/", members_page(RESULTS, 200)),
    # A judge call: its request holds the graded response, so annotators stay out.
    page("get", "judge_call", "/runs/{run}/calls/{call}/", members_page(RESULTS, 200)),
    api(
        "get",
        "runs/<int:pk>/scores/<int:score_pk>/verdicts/",
        "/api/runs/{run}/scores/{score}/verdicts/",
        members_only(RESULTS, 200),
    ),
    api("get", SLUG + "raters/", "/api/projects/{slug}/raters/", members_only(RESULTS, 200)),
    api("get", SLUG + "verdicts/", "/api/projects/{slug}/verdicts/", members_only(RESULTS, 200)),
    # --- Suites and their frozen versions ---------------------------------------------------
    page("get", "suites", "/p/{slug}/suites/", members_page(RESULTS, 200)),
    # A blank name: the form again, with its error.
    page("post", "suites", "/p/{slug}/suites/", members_page(SUITE_MAKERS, 200), {"name": ""}),
    page("get", "suite", "/suites/{eval_suite}/", members_page(RESULTS, 200)),
    page(
        "post",
        "suite_edit",
        "/suites/{eval_suite}/edit/",
        members_page(SUITE_MAKERS, 200),
        {"name": ""},
    ),
    # Nothing changed since v1: no new version, and the page says so (a redirect).
    page("post", "suite_freeze", "/suites/{eval_suite}/freeze/", members_page(SUITE_MAKERS, 302)),
    api("get", SLUG + "suites/", "/api/projects/{slug}/suites/", members_only(RESULTS, 200)),
    api("post", SLUG + "suites/", "/api/projects/{slug}/suites/", members_only(SUITE_MAKERS, 400)),
    api("get", "suites/<int:pk>/", "/api/suites/{eval_suite}/", members_only(RESULTS, 200)),
    api("patch", "suites/<int:pk>/", "/api/suites/{eval_suite}/", members_only(SUITE_MAKERS, 400)),
    # Nothing changed since v1: 200 with v1.
    api(
        "post",
        "suites/<int:pk>/freeze/",
        "/api/suites/{eval_suite}/freeze/",
        members_only(SUITE_MAKERS, 200),
    ),
    api(
        "get",
        "suites/<int:pk>/versions/",
        "/api/suites/{eval_suite}/versions/",
        members_only(RESULTS, 200),
    ),
    api(
        "get",
        "suites/<int:pk>/versions/<int:number>/",
        "/api/suites/{eval_suite}/versions/1/",
        members_only(RESULTS, 200),
    ),
    api(
        "get", "suites/<int:pk>/diff/", "/api/suites/{eval_suite}/diff/", members_only(RESULTS, 200)
    ),
    # --- Datasets ---------------------------------------------------------------------------
    page("get", "datasets", "/p/{slug}/datasets/", members_page(RESULTS, 200)),
    page("post", "datasets", "/p/{slug}/datasets/", members_page(OPERATORS, 200), {"name": ""}),
    api("get", SLUG + "datasets/", "/api/projects/{slug}/datasets/", members_only(RESULTS, 200)),
    api("post", SLUG + "datasets/", "/api/projects/{slug}/datasets/", members_only(OPERATORS, 400)),
    page("get", "snapshot", "/datasets/{snapshot}/", members_page(RESULTS, 200)),
    api("get", "datasets/<int:pk>/", "/api/datasets/{snapshot}/", members_only(RESULTS, 200)),
    api(
        "delete",
        "datasets/<int:pk>/",
        "/api/datasets/{new_snapshot}/",
        members_only(OPERATORS, 204),
    ),
    # A new snapshot is queued, not failed: retrying it is refused (a message, or 409).
    page("post", "snapshot_retry", "/datasets/{new_snapshot}/retry/", members_page(OPERATORS, 302)),
    api(
        "post",
        "datasets/<int:pk>/retry/",
        "/api/datasets/{new_snapshot}/retry/",
        members_only(OPERATORS, 409),
    ),
    page(
        "post", "snapshot_delete", "/datasets/{new_snapshot}/delete/", members_page(OPERATORS, 302)
    ),
    page("get", "snapshot_download", "/datasets/{snapshot}/download/", members_page(RESULTS, 200)),
    api(
        "get",
        "datasets/<int:pk>/download/",
        "/api/datasets/{snapshot}/download/",
        members_only(RESULTS, 200),
    ),
    # --- Annotation queues and assignments --------------------------------------------------
    page("get", "queues", "/p/{slug}/queues/", members_page(EVERYONE, 200)),
    page("post", "queues", "/p/{slug}/queues/", members_page(OPERATORS, 200), {"name": ""}),
    api("get", SLUG + "queues/", "/api/projects/{slug}/queues/", members_only(EVERYONE, 200)),
    api("post", SLUG + "queues/", "/api/projects/{slug}/queues/", members_only(OPERATORS, 400)),
    page("get", "queue", "/queues/{queue}/", members_page(RESULTS, 200)),
    # Its guidelines and reference setting: no guidelines sent, so the form again with the error.
    page("post", "queue", "/queues/{queue}/", members_page(OPERATORS, 200), {}),
    api("get", "queues/<int:pk>/", "/api/queues/{queue}/", members_only(RESULTS, 200)),
    api("patch", "queues/<int:pk>/", "/api/queues/{queue}/", members_only(OPERATORS, 400)),
    api("delete", "queues/<int:pk>/", "/api/queues/{new_queue}/", members_only(OPERATORS, 204)),
    api(
        "get",
        "queues/<int:pk>/assignments/",
        "/api/queues/{queue}/assignments/",
        members_only(RESULTS, 200),
    ),
    page("post", "queue_next", "/queues/{queue}/next/", members_page(ANNOTATORS, 302)),
    page("get", "my_work", "/p/{slug}/my-work/", members_page(ANNOTATORS, 200)),
    # The annotator holds an item already, so the claim answers it again.
    api(
        "post",
        "queues/<int:pk>/claim/",
        "/api/queues/{queue}/claim/",
        members_only(ANNOTATORS, 200),
    ),
    page("get", "assignment", "/assignments/{assignment}/", members_page(ANNOTATORS, 200)),
    api(
        "get",
        "assignments/<int:pk>/",
        "/api/assignments/{assignment}/",
        members_only(ANNOTATORS, 200),
    ),
    page(
        "post",
        "assignment_draft",
        "/assignments/{assignment}/draft/",
        members_page(ANNOTATORS, 302),
    ),
    api(
        "put",
        "assignments/<int:pk>/verdicts/",
        "/api/assignments/{assignment}/verdicts/",
        members_only(ANNOTATORS, 400),
    ),
    page(
        "post",
        "assignment_submit",
        "/assignments/{assignment}/submit/",
        members_page(ANNOTATORS, 302),
    ),
    # Nothing is decided yet, so an allowed submit is refused.
    api(
        "post",
        "assignments/<int:pk>/submit/",
        "/api/assignments/{assignment}/submit/",
        members_only(ANNOTATORS, 400),
    ),
    page(
        "post",
        "assignment_skip",
        "/assignments/{assignment}/skip/",
        members_page(ANNOTATORS, 302),
    ),
    api(
        "post",
        "assignments/<int:pk>/skip/",
        "/api/assignments/{assignment}/skip/",
        members_only(ANNOTATORS, 400),
    ),
    # --- Agreement, gold verdicts and calibration -------------------------------------------
    page("get", "agreement", "/versions/{version}/agreement/", members_page(RESULTS, 200)),
    api(
        "get",
        "versions/<int:pk>/agreement/",
        "/api/versions/{version}/agreement/",
        members_only(RESULTS, 200),
    ),
    page("get", "disagreements", "/versions/{version}/disagreements/", members_page(RESULTS, 200)),
    api(
        "get",
        "versions/<int:pk>/disagreements/",
        "/api/versions/{version}/disagreements/",
        members_only(RESULTS, 200),
    ),
    page(
        "get",
        "adjudicate",
        "/versions/{version}/adjudicate/{response}/{criterion}/",
        members_page(RESULTS, 200),
    ),
    page(
        "post",
        "adjudicate",
        "/versions/{version}/adjudicate/{response}/{criterion}/",
        members_page(ADJUDICATORS, 200),
        {},
    ),
    api(
        "get",
        "versions/<int:pk>/gold/",
        "/api/versions/{version}/gold/",
        members_only(RESULTS, 200),
    ),
    api(
        "post",
        "versions/<int:pk>/gold/",
        "/api/versions/{version}/gold/",
        members_only(ADJUDICATORS, 400),
    ),
    page("get", "calibration", "/versions/{version}/calibration/", members_page(RESULTS, 200)),
    page(
        "post",
        "calibration",
        "/versions/{version}/calibration/",
        members_page(ADMINS, 302),
        {"threshold": "1"},
    ),
    api(
        "get",
        "versions/<int:pk>/calibration/",
        "/api/versions/{version}/calibration/",
        members_only(RESULTS, 200),
    ),
    page(
        "get",
        "calibration_flags",
        "/calibration/versions/{version}/flags/",
        members_page(RESULTS, 200),
    ),
    api(
        "get",
        SLUG + "calibration-settings/",
        "/api/projects/{slug}/calibration-settings/",
        members_only(RESULTS, 200),
    ),
    api(
        "put",
        SLUG + "calibration-settings/",
        "/api/projects/{slug}/calibration-settings/",
        members_only(ADMINS, 400),
    ),
]
PAGE_ROWS = [row for row in ROWS if row.kind == "page"]
API_ROWS = [row for row in ROWS if row.kind == "api"]


# --- The world the rows' URLs name ---------------------------------------------------------


def build_world(project, admin, annotator, reviewer, prefix: str = "") -> SimpleNamespace:
    """One of everything in `project`, by the names the rows' URLs use; names start with
    `prefix`, so two worlds never share an external id, a model or a tag. The run is never
    started: the test's transaction never commits, so its Celery task is never sent. `make`
    builds a fresh object per call, for rows that delete (`{new_<name>}` in a URL)."""
    task_id = f"{prefix}t-1"
    task = rubric_services.task_create(
        project=project,
        external_id=task_id,
        title="Fever",
        messages="What should I do?",
        tags=[f"{prefix}tag"],
        reference="Rest and fluids.",
    )
    grader = factories.make_published_rubric(project, task, [("Advises hydration", 1)], admin)
    draft_rubric = rubric_services.rubric_create(
        project=project, task=task, title="Empty draft", user=admin
    )
    # A published rubric whose next version is being written: two criteria, in one group.
    edited_rubric = factories.make_published_rubric(
        project, task, [("Advises sleep", 1)], admin
    ).version.rubric
    edited = rubric_services.draft_for_edit(rubric=edited_rubric, user=admin)
    draft_criterion = edited.criteria.get()
    second = rubric_services.criterion_add(version=edited, text="Advises rest", points=1)
    rubric_services.criterion_indent(criterion=second)
    template = rubric_services.rubric_create(
        project=project, title="Generic", user=admin, is_template=True
    )
    factories.import_responses(
        project, [{"task_id": task_id, "model": f"{prefix}m", "response": "Rest."}]
    )
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    run = grading_services.run_create(project=project, grader=grader, judge=judge, user=admin)
    snapshot = snapshots.snapshot_create(
        project=project, name="snap", format="verdicts-jsonl", user=admin
    )
    snapshots.snapshot_build(snapshot_id=snapshot.pk)  # built here: the worker never sees it
    outsider_token, _ = tokens.token_create(user=factories.make_user(), name="x", scopes=["read"])
    invited = factories.make_user()
    rubric_services.member_invite(
        project=project, username=invited.username, role="author", actor=admin
    )
    invitation = Invitation.objects.get(project=project, user=invited)
    # Guidelines and the reference answer on: the blindness walk reads them on the annotation page.
    queue = factories.make_queue(
        project,
        grader,
        [annotator],
        admin,
        overlap=1,
        guidelines="Grade **carefully**.",
        show_reference=True,
    )
    assignment = annotation_services.assignment_claim(queue=queue, user=annotator)
    review_rubric = rubric_services.rubric_create(
        project=project,
        title="In review",
        user=admin,
        criteria=[rubric_services.clean_criterion("Advises rest", 1)],
    )
    in_review = review_rubric.versions.get()
    rubric_services.version_submit(version=in_review, user=admin)
    comment = rubric_services.comment_add(version=in_review, user=reviewer, body="Why?")
    criterion = grader.version.criteria.get()
    response = Response.objects.get(task=task)
    call = JudgeCall.objects.create(
        run=run,
        judge=judge,
        response=response,
        request='{"model": "m", "messages": [{"role": "user", "content": "Rest."}]}',
        reply='{"met": true, "explanation": "Advises rest."}',
        latency_ms=12,
    )
    verdict = Verdict.objects.create(
        response=response,
        criterion=criterion,
        rater=judge.rater,
        grader=grader,
        run=run,
        call=call,
        outcome=Verdict.Outcome.MET,
    )
    gold = annotation_services.gold_decide(
        response=response, criterion=criterion, outcome="met", note="", user=admin
    )
    job = import_jobs.import_job_create(
        project=project,
        upload=SimpleUploadedFile(f"{prefix}big.jsonl", b"{}\n"),
        user=admin,
    )
    price = ModelPrice.objects.create(model=f"{prefix}judge-price-model")
    # A suite of the task, frozen once (a rubric's suite of one is not changed by hand).
    eval_suite = suites.suite_create(
        project=project, name=f"{prefix}Eval set", user=admin, task_ids=[task.pk]
    )
    suites.suite_freeze(suite=eval_suite, user=admin)
    counter = itertools.count()

    def new_queue() -> int:
        return factories.make_queue(
            project, grader, [annotator], admin, overlap=1, name=f"q-{next(counter)}"
        ).pk

    makers = {
        "new_reference": lambda: (
            rubric_services.reference_add(task=task, body="Another reference.", user=admin).pk
        ),
        "new_snapshot": lambda: (
            snapshots.snapshot_create(
                project=project, name=f"snap-{next(counter)}", format="verdicts-jsonl", user=admin
            ).pk
        ),
        "new_queue": new_queue,
    }
    reference = rubric_services.reference_create(
        task=task, body="Rest.", file=SimpleUploadedFile("ref.txt", b"notes"), user=admin
    )
    return SimpleNamespace(
        make=makers,
        reference=reference.pk,
        stored_file=reference.file_sha256,
        token=outsider_token.pk,
        invited=invited.username,
        invitation=invitation.pk,
        snapshot=snapshot.pk,
        queue=queue.pk,
        assignment=assignment.pk,
        version=grader.version_id,
        review_rubric=review_rubric.pk,
        comment=comment.pk,
        slug=project.slug,
        admin=admin.username,
        member=reviewer.username,
        last_admin=admin.username,
        annotator=annotator.username,
        task=task.external_id,
        tag=f"{prefix}tag",
        model=f"{prefix}m",
        rubric=grader.version.rubric_id,
        draft_rubric=draft_rubric.pk,
        edited_rubric=edited_rubric.pk,
        draft_criterion=draft_criterion.pk,
        group=Criterion.objects.get(pk=second.pk).group_id,
        template=template.pk,
        criterion=criterion.pk,
        grader=grader.hash,
        judge=judge.pk,
        rater=judge.rater_id,
        run=run.pk,
        suite=run.suite_version.suite_id,
        suite_version=run.suite_version.number,
        score=run.scores.get().pk,
        response=response.pk,
        verdict=verdict.pk,
        call=call.pk,
        gold=gold.pk,
        import_job=job.pk,
        price=price.pk,
        price_model=price.model,
        eval_suite=eval_suite.pk,
    )


def row_url(row: Row, world: SimpleNamespace) -> str:
    """The row's URL in `world`; each `{new_<name>}` is a fresh object, made now."""
    names = {name for _, name, _, _ in string.Formatter().parse(row.url) if name}
    values = {name: world.make[name]() for name in names if name.startswith("new_")}
    return row.url.format(**{**vars(world), **values})


def call(row: Row, user, url: str):
    """The row's request as `user` (None: anonymous): a page with a signed-in session, an
    endpoint with an API token."""
    if row.kind == "api":
        client = api_client(user)
        if row.method == "get":
            return client.get(url)
        return getattr(client, row.method)(url, row.body or {}, format=row.body_format)
    client = Client()
    if user is not None:
        client.force_login(user)
    return getattr(client, row.method)(url, row.body or {})


def outcome(response) -> Outcome:
    """The status, or LOGIN for a redirect to the sign-in page."""
    if response.status_code == 302 and response.url.startswith(reverse("login")):
        return LOGIN
    return response.status_code


def openapi_path(route: str) -> str:
    """`projects/<slug:slug>/` as the schema names it: `/api/projects/{slug}/` (pk is id)."""
    route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
    return "/api/" + route.replace("{pk}", "{id}")
