from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import JsonResponse
from django.urls import include, path
from django.utils.csp import CSP
from django.views import defaults
from django.views.decorators.csp import csp_override
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

# Redoc (styled-components) injects <style> elements before it learns the nonce, and builds
# its search index in a blob: worker. Its page shows only our own schema, so it alone may use
# inline styles and that worker; scripts stay as strict as everywhere else.
REDOC_CSP = {
    **settings.SECURE_CSP,
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "worker-src": [CSP.SELF, "blob:"],
}

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Changing one's password runs AUTH_PASSWORD_VALIDATORS, like sign-up does.
    path(
        "account/password/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "account/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api_docs"),
    path(
        "api/redoc/",
        csp_override(REDOC_CSP)(SpectacularRedocView.as_view(url_name="schema")),
        name="api_redoc",
    ),
    path("api/", include("assay.api_urls")),
    path("", include("rubrics.urls")),
    path("", include("annotation.urls")),
    path("", include("grading.urls")),
]


def not_found(request, exception):
    """A URL under /api/ that matches no route answers in the API's own shape (JSON with a
    `detail`), as the operations' documented 404s do; pages keep the site's 404 page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


handler404 = not_found
