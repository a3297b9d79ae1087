"""Assay settings: one module, every difference between environments is an env variable.

With no DATABASE_URL and no CELERY_BROKER_URL, Assay runs on the embedded default: SQLite
and kombu's filesystem transport under `var/`, so one command shows the product on a
laptop. Production sets DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis or RabbitMQ),
and must set SECRET_KEY whenever DEBUG is off. See `.env.example`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from assay.env import (
    env_bool,
    env_fernet_keys,
    env_int,
    env_key_bindings,
    env_list,
    env_networks,
    env_required,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ASSAY_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env_str("SECRET_KEY") or "insecure-debug-only-key-never-used-without-debug"
else:
    SECRET_KEY = env_required("SECRET_KEY", "it signs sessions; required whenever DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "rubrics",
    "annotation",
    "grading",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # A view that meets a lost database connection answers 503 with a plain message.
    "assay.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before CSRF, which parses a POST body: an upload over its route's limit is never read.
    "assay.upload_guards.UploadLimitMiddleware",
    # NUL or lone surrogates in the path (404) or in any parameter (400 naming it), before any
    # view or CSRF reads them; a page's malformed whole number (rubrics.params) is a 400 too.
    "assay.middleware.BadInputMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Audit events a request records say 'web', 'api' or 'admin' and the client's address.
    "rubrics.audit.AuditOriginMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a lockout flagged during authentication into a 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "assay.urls"
WSGI_APPLICATION = "assay.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
            "builtins": ["assay.templatetags.assay"],
        },
    }
]

# The embedded default (SQLite, filesystem broker) is for a laptop. Outside DEBUG it must be
# asked for by name, so a production process with a missing DATABASE_URL or broker URL stops
# instead of quietly writing to a local file.
EMBEDDED = env_bool("ASSAY_EMBEDDED", default=DEBUG)
if not EMBEDDED:
    env_required("DATABASE_URL", "PostgreSQL, e.g. postgres://user:pw@host:5432/assay")
    env_required("CELERY_BROKER_URL", "Redis or RabbitMQ, e.g. redis://host:6379/0")

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    # Health checks: a kept connection that a PostgreSQL restart broke is replaced at the
    # start of the next request or task instead of failing it.
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "assay.sqlite3",
            # The embedded default runs a web server and a worker on one file: WAL lets them
            # read while the other writes, IMMEDIATE takes the write lock up front.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# SQLite (the embedded default only) cannot defer the criterion-position constraint, so it is
# not created there; PostgreSQL, which the tests use, enforces it.
SILENCED_SYSTEM_CHECKS = ["models.W038"]

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # kombu's default is ./control: the exchange tables belong under var/ with the rest.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE") or "assay"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup would close each worker thread's database connection around every
# task (a new PostgreSQL backend per graded response); assay/celery.py lets Django's
# CONN_MAX_AGE and usability checks decide instead, as they do for web requests.
CELERY_DB_REUSE_MAX = 1000
# Service faults (README, "Service faults"). Every worker looks this often for runs whose
# queued tasks were lost (the broker's Redis came back empty, a worker was killed) and queues
# their pending responses again; a running run with pending work and no new verdict for
# ASSAY_RUN_STALL_S counts as lost. A task waits up to ASSAY_SERVICE_WAIT_S for PostgreSQL or
# Redis to come back before it gives up (and is retried).
ASSAY_RECOVERY_CHECK_S = env_int("ASSAY_RECOVERY_CHECK_S", 15)
ASSAY_RUN_STALL_S = env_int("ASSAY_RUN_STALL_S", 600)
ASSAY_SERVICE_WAIT_S = env_int("ASSAY_SERVICE_WAIT_S", 120)
# A background import queued or running with no sign of life (its worker writes one every few
# seconds) for ASSAY_IMPORT_STALL_S is lost: the recovery sweep queues it again, and after
# ASSAY_IMPORT_MAX_ATTEMPTS tries marks it failed. Uploads of ended imports are deleted.
ASSAY_IMPORT_STALL_S = env_int("ASSAY_IMPORT_STALL_S", 60)
ASSAY_IMPORT_MAX_ATTEMPTS = env_int("ASSAY_IMPORT_MAX_ATTEMPTS", 3)
# Every worker writes a heartbeat this often (0: never); a run page warns that no worker is
# running when none has been written for three of these.
ASSAY_WORKER_HEARTBEAT_S = env_int("ASSAY_WORKER_HEARTBEAT_S", 10)
# A run's responses go to the workers in chunks of up to this many, one task each (1: a task
# per response); a chunk's rows are read and written in a few statements, not per response.
ASSAY_GRADE_CHUNK = env_int("ASSAY_GRADE_CHUNK", 8)

# --- Judges ---------------------------------------------------------------------------
# The longest one judge call may take, all of it: connecting, sending, and reading the reply
# to its last byte (grading.judges.transport), however the judge trickles it.
JUDGE_TIMEOUT_S = env_int("ASSAY_JUDGE_TIMEOUT_S", 60)
# The most a judge's reply body may hold; a longer one is abandoned and the call is an error
# (reply_too_large), the connection closed. A verdict, or a batch of them, is a few kB.
JUDGE_MAX_REPLY_BYTES = env_int("ASSAY_JUDGE_MAX_REPLY_BYTES", 4 * 1024 * 1024)
JUDGE_MAX_ATTEMPTS = env_int("ASSAY_JUDGE_MAX_ATTEMPTS", 6)
# Total time one item (criterion, or a batch) may take across its attempts and back-offs.
JUDGE_ITEM_DEADLINE_S = env_int("ASSAY_JUDGE_ITEM_DEADLINE_S", 300)
JUDGE_MAX_REASKS = env_int("ASSAY_JUDGE_MAX_REASKS", 2)
# The reward endpoint: every judge call of one request ends this long after the request began
# (an error verdict, reason timeout or deadline, past it), and one process serves at most
# REWARD_MAX_CONCURRENT reward requests at once; more are answered 503 with Retry-After at
# once, so requests waiting on a slow judge never hold every thread of a process that also
# serves pages. Keep it below the server's threads per process (gunicorn --threads) where
# people are served too; a pool of its own (README, Production) may set it to its threads.
REWARD_DEADLINE_S = env_int("ASSAY_REWARD_DEADLINE_S", 60)
REWARD_MAX_CONCURRENT = env_int("ASSAY_REWARD_MAX_CONCURRENT", 2)
# A reward request's body, images and files inline as base64 (each file at most
# FILE_MAX_BYTES): a few MB of images a request fit; a larger body is a 413 before it is read.
REWARD_MAX_BODY_BYTES = env_int("ASSAY_REWARD_MAX_BODY_BYTES", 32 * 1024 * 1024)
# Threads per worker process that make judge calls (the judge's own limits bound them further).
# Size it near the busiest judge's in-flight limit divided by the worker processes: threads
# beyond a process's share only wait for a slot, and each is one more for the GIL to serve
# (bench/grading.py: 40 instead of 64 for a limit of 64 over two workers kept 63.3 of the
# judge's 64 slots busy instead of 63.0).
JUDGE_THREADS = env_int("ASSAY_JUDGE_THREADS", 64)
# Judge URLs on loopback, private, CGNAT or other non-public addresses (a local vLLM or
# Ollama) are refused unless the operator allows them: all of them, or only these networks.
# Metadata, link-local and the like stay refused whatever these say (grading.judges.addresses).
JUDGE_ALLOW_PRIVATE_URLS = env_bool("ASSAY_JUDGE_ALLOW_PRIVATE_URLS", default=DEBUG)
JUDGE_PRIVATE_NETWORKS = env_networks("ASSAY_JUDGE_PRIVATE_NETWORKS")
# The deployment's environment variables judges may use for their API key, each bound to the
# hosts it may be sent to (OPENAI_API_KEY@api.openai.com, several: VAR@host1|host2); an entry
# without a host stops the server. Empty (the default): no judge may use any deployment
# variable; each judge carries its project's own key, entered by a project admin.
JUDGE_KEY_VARIABLES = env_key_bindings("ASSAY_JUDGE_KEY_VARIABLES")
# Project judge keys are stored encrypted with these Fernet keys (comma-separated; the first
# encrypts, all decrypt, so a new key goes first and the old one stays until
# `manage.py rotate_judge_keys` has re-encrypted every key). Required to store a project key
# outside DEBUG; in DEBUG (the demo) a key derived from SECRET_KEY stands in.
SECRETS_KEYS = env_fernet_keys("ASSAY_SECRETS_KEY")
# Shared judge limits (in-flight, requests/min, tokens/min) live in Redis under this prefix,
# so several deployments (or test sessions) can share one Redis without colliding.
ASSAY_REDIS_URL = env_str("ASSAY_REDIS_URL") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
ASSAY_REDIS_PREFIX = env_str("ASSAY_REDIS_PREFIX") or "assay"

# --- Auth, API ------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Brute force: after ASSAY_LOGIN_FAILURE_LIMIT failures for one username from one address,
# that pair is locked out for 15 minutes (django-axes, attempts kept in the database so every
# web process sees them). Applies to the login page and to the API's password exchange.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ASSAY_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ASSAY_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# Anyone may create an account at /signup/ only when this is on (the demo turns it on).
# Otherwise accounts are made by staff (Django admin, `manage.py createsuperuser`).
SIGNUP_OPEN = env_bool("ASSAY_SIGNUP", default=False)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "assay.api_auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "assay.api_auth.TokenScopes",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON bodies: nesting capped and unstorable text refused before anything reads them;
    # form bodies (PUT and PATCH too): unstorable text refused, naming the field.
    "DEFAULT_PARSER_CLASSES": [
        "assay.upload_guards.JSONParser",
        "assay.upload_guards.FormParser",
        "assay.upload_guards.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Assay API",
    "DESCRIPTION": "Rubrics, responses, judges, grading runs and scores.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "grading.models.GradingRun.Status",
        "ScoreStatusEnum": "grading.models.Score.Status",
        "RoleEnum": "rubrics.models.Role",
        "RaterKindEnum": "annotation.models.Rater.Kind",
        "CriterionKindEnum": "rubrics.models.Criterion.Kind",
    },
}

# --- I18N, static ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic writes (and WhiteNoise serves from); the load benchmark collects into a
# temporary folder so it never touches a deployment's.
STATIC_ROOT = Path(env_str("ASSAY_STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # Installed from the npm registry by `npm ci`; never committed.
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
    ("vendor/chartjs", BASE_DIR / "node_modules" / "chart.js" / "dist"),
    # The rubric editor's swaps morph the list, so what an author is typing survives them.
    ("vendor/idiomorph", BASE_DIR / "node_modules" / "idiomorph" / "dist"),
]
# Snapshots, uploads and the files responses carry (rubrics.files.store): the filesystem by
# default; an S3-compatible bucket (AWS S3, MinIO, R2, GCS's S3 API) through django-storages
# when ASSAY_S3_BUCKET is set, which web and workers on several machines need (README "File
# storage"). Nothing in it is public: objects are private and only Assay's views serve them.
S3_BUCKET = env_str("ASSAY_S3_BUCKET")
if S3_BUCKET:
    DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",  # pip install "assay[s3]"
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env_str("ASSAY_S3_ENDPOINT_URL") or None,
            "region_name": env_str("ASSAY_S3_REGION") or None,
            "location": env_str("ASSAY_S3_PREFIX") or "",
            "default_acl": "private",
            "querystring_auth": True,  # no object is ever reachable by a bare URL
            "file_overwrite": False,
        },
    }
else:
    DEFAULT_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(Path(env_str("ASSAY_MEDIA_DIR") or VAR_DIR / "media"))},
    }
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("ASSAY_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# A file attached to a reference answer (stored in the default storage, served only through
# a view that checks the reader's role).
REFERENCE_FILE_MAX_BYTES = env_int("ASSAY_REFERENCE_FILE_MAX_BYTES", 20 * 1024 * 1024)
# A file a response, task or reference carries as a part (an image or a deliverable): stored
# by its SHA-256 and served only through a view that checks the reader's project membership.
FILE_MAX_BYTES = env_int("ASSAY_FILE_MAX_BYTES", 20 * 1024 * 1024)

# Upload limits, per kind of file (README "Upload limits"). Rubric and task files are parsed
# whole in memory before anything is written, so they get less room than responses, which
# stream through COPY. A request whose declared size is over its route's limit is refused
# before its body is read (assay.uploads.UploadLimitMiddleware).
RUBRIC_UPLOAD_MAX_BYTES = env_int("ASSAY_RUBRIC_UPLOAD_MAX_BYTES", 100 * 1024 * 1024)
TASK_UPLOAD_MAX_BYTES = env_int("ASSAY_TASK_UPLOAD_MAX_BYTES", 200 * 1024 * 1024)
RESPONSE_UPLOAD_MAX_BYTES = env_int("ASSAY_RESPONSE_UPLOAD_MAX_BYTES", 2 * 1024 * 1024 * 1024)
# XLSX is a zip: what it unpacks to, how much one member may expand, how many parts it holds.
XLSX_MAX_UNPACKED_BYTES = env_int("ASSAY_XLSX_MAX_UNPACKED_BYTES", 200 * 1024 * 1024)
XLSX_MAX_RATIO = env_int("ASSAY_XLSX_MAX_RATIO", 200)
XLSX_MAX_MEMBERS = env_int("ASSAY_XLSX_MAX_MEMBERS", 500)
# A bundle (.zip, .tar, .tar.gz) of the files responses carry, uploaded with them or holding
# them (README "Images and files in responses"). Never unpacked to disk: members are read one
# at a time, each at most FILE_MAX_BYTES (the responses file inside excepted).
BUNDLE_MAX_BYTES = env_int("ASSAY_BUNDLE_MAX_BYTES", 2 * 1024 * 1024 * 1024)
BUNDLE_MAX_UNPACKED_BYTES = env_int("ASSAY_BUNDLE_MAX_UNPACKED_BYTES", 4 * 1024 * 1024 * 1024)
BUNDLE_MAX_MEMBERS = env_int("ASSAY_BUNDLE_MAX_MEMBERS", 200_000)
BUNDLE_MAX_RATIO = env_int("ASSAY_BUNDLE_MAX_RATIO", 200)
# A rubric spreadsheet (CSV or XLSX): one criterion per row.
SHEET_MAX_ROWS = env_int("ASSAY_SHEET_MAX_ROWS", 100_000)
SHEET_MAX_COLUMNS = env_int("ASSAY_SHEET_MAX_COLUMNS", 100)
# Parquet declares its rows and their unpacked size up front: refused before a row is read.
PARQUET_MAX_ROWS = env_int("ASSAY_PARQUET_MAX_ROWS", 20_000_000)
PARQUET_MAX_UNPACKED_BYTES = env_int("ASSAY_PARQUET_MAX_UNPACKED_BYTES", 8 * 1024 * 1024 * 1024)
PARQUET_MAX_ROW_GROUP_BYTES = env_int("ASSAY_PARQUET_MAX_ROW_GROUP_BYTES", 1024 * 1024 * 1024)
# One value and one row of a Parquet file, decoded: refused from the footer's sizes when it
# shows them, else from each batch's Arrow buffers before any value becomes a Python object.
PARQUET_MAX_FIELD_BYTES = env_int("ASSAY_PARQUET_MAX_FIELD_BYTES", 8 * 1024 * 1024)
PARQUET_MAX_ROW_BYTES = env_int("ASSAY_PARQUET_MAX_ROW_BYTES", 16 * 1024 * 1024)
# A task's prompt, however it arrives (page, API, import): characters per message, messages
# per prompt, characters of context.
TASK_MESSAGE_MAX_CHARS = env_int("ASSAY_TASK_MESSAGE_MAX_CHARS", 200_000)
TASK_MESSAGES_MAX = env_int("ASSAY_TASK_MESSAGES_MAX", 500)
TASK_CONTEXT_MAX_CHARS = env_int("ASSAY_TASK_CONTEXT_MAX_CHARS", 1_000_000)
# JSON from any file line or API body: deeper nesting is refused before it is parsed.
JSON_MAX_DEPTH = env_int("ASSAY_JSON_MAX_DEPTH", 64)

# HTTPS in production. Behind a proxy that terminates TLS, set ASSAY_BEHIND_PROXY=1 so the
# X-Forwarded-Proto header is trusted (only then: otherwise a client could forge it).
SECURE_SSL_REDIRECT = env_bool("ASSAY_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env_int("ASSAY_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("ASSAY_HSTS_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("ASSAY_HSTS_PRELOAD", default=True)
if env_bool("ASSAY_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG and env_bool("ASSAY_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy on every response. Everything shown is untrusted, so a script runs
# only from our own static files or a <script> carrying this response's nonce: no inline
# handlers, no javascript: URLs, no eval (htmx is configured not to eval, see base.html).
# Styles come from our stylesheets (or a nonce'd <style>); style="" attributes are refused,
# so markup that slips through cannot restyle or overlay the page.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL") or "INFO"},
    "loggers": {"httpx": {"level": "WARNING"}},
}
