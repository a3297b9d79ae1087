"""API authentication by hashed, scoped tokens, and the scope check every API view runs."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS, BasePermission

from rubrics.models import ApiToken
from rubrics.tokens import token_authenticate

KEYWORDS = (b"token", b"bearer")
# Operations that spend judge calls need the "grade" scope, whatever their method.
GRADE_ROUTES = {
    "api_runs",
    "api_run_cancel",
    "api_run_retry_failed",
    "api_run_resume",
    "api_grader_score",
    "api_suite_score",
    "api_suite_version_score",
}


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Token <key>` (or `Bearer <key>`)."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Send the header as 'Authorization: Token <key>'.")
        try:
            raw = parts[1].decode()
        except UnicodeDecodeError:
            raise AuthenticationFailed("The token is not text.") from None
        token = token_authenticate(raw)
        if token is None:
            raise AuthenticationFailed("Unknown, expired or revoked token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Token realm="api"'


def required_scope(request, view) -> str:
    match = getattr(request, "resolver_match", None)
    if match and match.url_name in GRADE_ROUTES and request.method not in SAFE_METHODS:
        return ApiToken.Scope.GRADE
    return getattr(view, "required_scope", None) or (
        ApiToken.Scope.READ if request.method in SAFE_METHODS else ApiToken.Scope.WRITE
    )


class TokenScopes(BasePermission):
    """A token may do only what its scopes say; a browser session is not limited by scopes."""

    message = "This token lacks the scope for this operation."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        needed = required_scope(request, view)
        if needed not in token.scopes:
            self.message = f"This token lacks the '{needed}' scope."
            return False
        return True


try:  # the schema names the scheme; drf-spectacular finds extensions by import
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    class ApiTokenScheme(OpenApiAuthenticationExtension):
        target_class = "assay.api_auth.ApiTokenAuthentication"
        name = "tokenAuth"

        def get_security_definition(self, auto_schema):
            return {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "`Token <key>`. Keys have scopes (read, write, grade) and expire.",
            }
except ImportError:  # pragma: no cover - drf-spectacular is a dependency
    pass
