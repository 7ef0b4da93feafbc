"""Settings of the portal: the only settings file, every knob an environment variable.

Defaults need nothing installed (SQLite, in-memory channel layer and cache, loopback).
Production sets ``PORTAL_ENV=production`` plus ``DATABASE_URL``, ``REDIS_URL`` and
``PORTAL_ALLOWED_HOSTS``. See docs/configuration.md for the full list.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from portal import __version__
from portal.env import (
    env_bool,
    env_choice,
    env_float,
    env_host_patterns,
    env_int,
    env_json_object,
    env_list,
    env_optional_int,
    env_secret,
    env_str,
    env_url,
    generated_secret,
)
from portal.plugins.discovery import Discovery, discover
from portal.private_files import keep_new_files_private

# Before anything below creates a file: the data folder, the secret key, the database.
keep_new_files_private()

BASE_DIR = Path(__file__).resolve().parent.parent

PORTAL_ENV = env_choice("PORTAL_ENV", "development", ("development", "production"))
PRODUCTION = PORTAL_ENV == "production"
DEBUG = env_bool("PORTAL_DEBUG", False)
if PRODUCTION and DEBUG:
    # Debug pages show settings, source and SQL to anyone who triggers an error.
    raise ImproperlyConfigured("PORTAL_DEBUG=true is refused with PORTAL_ENV=production: unset PORTAL_DEBUG.")

DATA_DIR = Path(env_str("PORTAL_DATA_DIR", str(BASE_DIR / "data"))).resolve()
# Private to the portal's user: it holds the database, the secret key and the logs (doctor checks).
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)

PORTAL_HOST = env_str("PORTAL_HOST", "127.0.0.1")
PORTAL_PORT = env_int("PORTAL_PORT", 8000, minimum=1, maximum=65535)
# Trust X-Forwarded-For/-Proto from the peer (runportal passes Daphne --proxy-headers): only
# behind a proxy that sets them, or any client could claim any IP and dodge rate limits.
PORTAL_BEHIND_PROXY = env_bool("PORTAL_BEHIND_PROXY", False)


def _secret_key() -> str:
    """Use the configured key, or generate one into the data directory (mode 0600) once."""
    configured = env_secret("PORTAL_SECRET_KEY")
    if configured:
        if len(configured) < 50:
            raise ImproperlyConfigured("PORTAL_SECRET_KEY must be at least 50 characters long.")
        return configured
    return generated_secret(DATA_DIR / "secret_key")


SECRET_KEY = _secret_key()


def _this_machines_names() -> list[str]:
    """Return the names and addresses people use to reach this machine (for a wildcard bind)."""
    import socket

    import psutil

    names = {socket.gethostname(), socket.getfqdn()}
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET:
                names.add(address.address)
            elif address.family == socket.AF_INET6:
                names.add(f"[{address.address.split('%')[0]}]")
    return sorted(names)


_default_hosts = ["127.0.0.1", "localhost", "[::1]"]
if PORTAL_HOST in ("0.0.0.0", "::"):  # noqa: S104 - comparison only
    # Bound to every interface: the URL runportal prints (this machine's name) and its
    # addresses must open the portal, not a 400 Bad Request.
    _default_hosts += _this_machines_names()
elif PORTAL_HOST not in ("127.0.0.1", "localhost", "::1"):
    _default_hosts.append(PORTAL_HOST)
ALLOWED_HOSTS = env_list("PORTAL_ALLOWED_HOSTS", [] if PRODUCTION else _default_hosts)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("PORTAL_ALLOWED_HOSTS must name the public host name(s) in production.")
CSRF_TRUSTED_ORIGINS = env_list("PORTAL_CSRF_TRUSTED_ORIGINS", [])
# The address people open (https://portal.example.com); doctor checks the bind address,
# allowed hosts, CSRF origins and WebSocket upgrades against it.
PORTAL_PUBLIC_URL = env_url("PORTAL_PUBLIC_URL", ("http", "https"))
# How many web processes serve this portal (the deploy/ units' count); doctor requires Redis
# and the metrics' multiprocess directory when it is above 1.
PORTAL_WEB_PROCESSES = env_int("PORTAL_WEB_PROCESSES", 1, minimum=1, maximum=256)
# Bearer token that may read /metrics (staff sessions may too); unset: staff only.
PORTAL_METRICS_TOKEN = env_secret("PORTAL_METRICS_TOKEN")
if PORTAL_METRICS_TOKEN is not None and len(PORTAL_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("PORTAL_METRICS_TOKEN must be at least 32 characters long (`openssl rand -hex 32`).")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "portal",
    "portal.audit",
    "accounts",
    "inference",
    "chat",
]

# --- Plugins (docs/plugins.md) -----------------------------------------------------------
# Found before the apps load: installed packages' `portal.plugins` entry points and the
# packages named here. A plugin that fails to import, is incompatible or lacks a required
# setting is skipped with a warning (and listed on /plugins/); the portal starts anyway.
PORTAL_PLUGINS = env_list("PORTAL_PLUGINS", [])
PORTAL_PLUGINS_DISABLED = env_list("PORTAL_PLUGINS_DISABLED", [])
PORTAL_PLUGINS_ENTRY_POINTS = env_bool("PORTAL_PLUGINS_ENTRY_POINTS", True)
# {"<slug>": {"<setting>": value}}; PORTAL_PLUGIN_SETTINGS_FILE names a file holding it.
PORTAL_PLUGIN_SETTINGS = env_json_object("PORTAL_PLUGIN_SETTINGS")
# Seconds all inference.before_generate hooks of one request may take together; past it
# the request is refused (fail closed). Other hooks' time is only logged.
PORTAL_PLUGIN_HOOK_TIMEOUT = env_float("PORTAL_PLUGIN_HOOK_TIMEOUT", 5.0, minimum=0.1, maximum=120.0)


def _discover_plugins() -> Discovery:
    try:
        return discover(
            PORTAL_PLUGINS,
            portal_version=__version__,
            plugin_settings=PORTAL_PLUGIN_SETTINGS,
            disabled=PORTAL_PLUGINS_DISABLED,
            use_entry_points=PORTAL_PLUGINS_ENTRY_POINTS,
        )
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None


PORTAL_PLUGIN_DISCOVERY = _discover_plugins()
INSTALLED_APPS += PORTAL_PLUGIN_DISCOVERY.apps

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.audit.request_context.RequestIdMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.ratelimits.RateLimitMiddleware",
    "accounts.required_steps.RequiredStepsMiddleware",
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"
WSGI_APPLICATION = None

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
                "portal.navigation.context",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # An unreachable server fails a request (and /readyz) in seconds instead of hanging;
        # `?connect_timeout=N` in the URL overrides it.
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
        # A bounded pool per process: a burst of requests waits for one of its connections
        # instead of opening one each (256 /v1 streams at once exceeded PostgreSQL's
        # max_connections, docs/benchmarks.md). 0 turns it off (one connection per thread).
        DB_POOL_SIZE = env_int("PORTAL_DB_POOL_SIZE", 20 if PRODUCTION else 0, minimum=0, maximum=1000)
        if DB_POOL_SIZE:
            DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 1, "max_size": DB_POOL_SIZE, "timeout": 30}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "portal.sqlite3")}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the supervisor write state while web processes read. IMMEDIATE transactions
    # take the write lock at BEGIN and wait for it (up to `timeout` seconds): a deferred one
    # that read first fails at once with "database is locked" when another process (the
    # supervisor's heartbeat) committed meanwhile, and a chat message would be refused.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Channel layer and cache -----------------------------------------------------------
def _next_redis_database(url: str) -> str:
    """Return the Redis URL of the database after ``url``'s (``redis://h/0`` -> ``redis://h/1``)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    in_query = parts.scheme == "unix" or "db" in query
    number = query.get("db", ["0"])[0] if in_query else (parts.path.strip("/") or "0")
    if not number.isdigit():
        raise ImproperlyConfigured(f"REDIS_URL names the database {number!r}, which is not a number.")
    if in_query:
        query["db"] = [str(int(number) + 1)]
        return f"{url.split('?', 1)[0]}?{urlencode(query, doseq=True)}"
    return urlunsplit(parts._replace(path=f"/{int(number) + 1}"))


REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
REDIS_PREFIX = env_str("PORTAL_REDIS_PREFIX", "portal")
# The cache gets its own Redis database: cache.clear() flushes a whole database and must
# not take the channel layer's messages with it.
CACHE_URL = env_url("PORTAL_CACHE_URL", ("redis", "rediss", "unix")) or (
    _next_redis_database(REDIS_URL) if REDIS_URL else None
)
if REDIS_URL:
    # No socket_timeout here: channels-redis blocks on reads for longer than any small limit.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # channels-redis drops a message to a channel holding `capacity` (default 100) unread
            # ones; at 64 chat streams on one web process (bench/relay.py) that lost `done`
            # frames. A socket's frames are small and expire after 60 s, so allow far more.
            "CONFIG": {"hosts": [REDIS_URL], "prefix": REDIS_PREFIX, "capacity": 2000},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": REDIS_PREFIX,
            # A Redis that does not answer fails fast (and /readyz says so) instead of hanging.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Accounts (django-allauth) ---------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "accounts.adapter.PortalAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
PORTAL_SIGNUP_OPEN = env_bool("PORTAL_SIGNUP_OPEN", False)
# Self sign-up must prove the address. The login stage in accounts/stages.py applies this only
# to users who signed up themselves: accounts made by an admin need no (verified) mailbox.
ACCOUNT_EMAIL_VERIFICATION = "mandatory" if PORTAL_SIGNUP_OPEN else "optional"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_LOGOUT_ON_GET = False
# allauth's own login rate limits stay on (its defaults); they use the cache above.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env_str("PORTAL_MFA_ISSUER", "LLM Portal")
# TOTP secrets and recovery-code seeds are stored encrypted (accounts/mfa_adapter.py).
MFA_ADAPTER = "accounts.mfa_adapter.PortalMFAAdapter"
# Admins must turn on MFA before any page (accounts/required_steps.py); on in production.
PORTAL_ADMIN_MFA_REQUIRED = env_bool("PORTAL_ADMIN_MFA_REQUIRED", PRODUCTION)
# Unset, mail is written to the console (the log): fine on a laptop, but in production that
# puts password-reset links in the logs, so `check --deploy` refuses it there unless the
# console backend is named on purpose (accounts/mail_checks.py).
PORTAL_EMAIL_BACKEND = env_str("PORTAL_EMAIL_BACKEND", "")
EMAIL_BACKEND = PORTAL_EMAIL_BACKEND or "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("PORTAL_FROM_EMAIL", "portal@localhost")
EMAIL_HOST = env_str("PORTAL_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("PORTAL_EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("PORTAL_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_secret("PORTAL_EMAIL_HOST_PASSWORD") or ""
# STARTTLS on a plain port (usually 587), or TLS from the first byte (usually 465): one or none.
EMAIL_USE_TLS = env_bool("PORTAL_EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("PORTAL_EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured(
        "PORTAL_EMAIL_USE_TLS and PORTAL_EMAIL_USE_SSL are both true: set one (STARTTLS, usually port 587) "
        "or the other (implicit TLS, usually port 465)."
    )


# --- Company sign-in: OpenID Connect and LDAP (docs/sso.md) ----------------------------
def _group_map(name: str) -> dict[str, list[str]]:
    """Parse a group mapping: a JSON object of provider group -> portal group name(s)."""
    mapping: dict[str, list[str]] = {}
    for external, portal_groups in env_json_object(name).items():
        names = [portal_groups] if isinstance(portal_groups, str) else portal_groups
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ImproperlyConfigured(
                f"{name}: the value of {external!r} must be a portal group name or a list of them."
            )
        mapping[external] = [n.strip() for n in names]
    return mapping


def _oidc_providers() -> dict[str, dict[str, Any]]:
    """Read each provider named in PORTAL_OIDC_PROVIDERS from its PORTAL_OIDC_<ID>_* variables."""
    import re

    providers: dict[str, dict[str, Any]] = {}
    for provider_id in env_list("PORTAL_OIDC_PROVIDERS", []):
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", provider_id):
            raise ImproperlyConfigured(
                f"PORTAL_OIDC_PROVIDERS: {provider_id!r} is not a provider id (lower-case letters, digits and -)."
            )
        prefix = f"PORTAL_OIDC_{provider_id.upper().replace('-', '_')}_"
        server_url = env_url(prefix + "SERVER_URL", ("http", "https"))
        client_id = env_str(prefix + "CLIENT_ID", "")
        secret = env_secret(prefix + "CLIENT_SECRET")
        missing = [
            n for n, v in (("SERVER_URL", server_url), ("CLIENT_ID", client_id), ("CLIENT_SECRET", secret)) if not v
        ]
        if missing:
            raise ImproperlyConfigured(
                f"OpenID Connect provider {provider_id!r} needs {', '.join(prefix + n for n in missing)}."
            )
        providers[provider_id] = {
            "name": env_str(prefix + "NAME", provider_id),
            "server_url": server_url,
            "client_id": client_id,
            "secret": secret,
            "scopes": env_list(prefix + "SCOPES", ["openid", "profile", "email"]),
            "groups_claim": env_str(prefix + "GROUPS_CLAIM", "groups"),
            "group_map": _group_map(prefix + "GROUP_MAP"),
            "token_auth_method": env_choice(
                prefix + "TOKEN_AUTH_METHOD", "auto", ("auto", "client_secret_basic", "client_secret_post")
            ),
            "pkce": env_bool(prefix + "PKCE", True),
        }
    return providers


PORTAL_OIDC = _oidc_providers()
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        "APPS": [
            {
                "provider_id": provider_id,
                "name": config["name"],
                "client_id": config["client_id"],
                "secret": config["secret"],
                "settings": {
                    "server_url": config["server_url"],
                    "oauth_pkce_enabled": config["pkce"],
                    "scope": config["scopes"],
                    **(
                        {}
                        if config["token_auth_method"] == "auto"  # noqa: S105 - a method name, no password
                        else {"token_auth_method": config["token_auth_method"]}
                    ),
                },
            }
            for provider_id, config in PORTAL_OIDC.items()
        ],
    }
}
# The "Sign in with" buttons post to the portal, which redirects to the provider: browsers
# apply the CSP's form-action to that redirect, so the providers' origins must be allowed.
_OIDC_FORM_ORIGINS = "".join(
    sorted({" " + "/".join(str(config["server_url"]).split("/")[:3]) for config in PORTAL_OIDC.values()})
)
SOCIALACCOUNT_ADAPTER = "accounts.oidc.PortalSocialAccountAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
# The provider vouches for the address it marks verified: such a sign-in is matched to the
# local account with that address (never an unverified one; see docs/sso.md).
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = 10

PORTAL_LDAP_SERVER_URI = env_url("PORTAL_LDAP_SERVER_URI", ("ldap", "ldaps"))
PORTAL_LDAP: dict[str, Any] = {}
if PORTAL_LDAP_SERVER_URI:
    _user_dn_template = env_str("PORTAL_LDAP_USER_DN_TEMPLATE", "")
    _user_search_base = env_str("PORTAL_LDAP_USER_SEARCH_BASE", "")
    if bool(_user_dn_template) == bool(_user_search_base):
        raise ImproperlyConfigured(
            "With PORTAL_LDAP_SERVER_URI, set exactly one of PORTAL_LDAP_USER_DN_TEMPLATE (direct bind, "
            "e.g. uid=%(user)s,ou=people,dc=example,dc=org) and PORTAL_LDAP_USER_SEARCH_BASE (search, then bind)."
        )
    if _user_dn_template and "%(user)s" not in _user_dn_template:
        raise ImproperlyConfigured("PORTAL_LDAP_USER_DN_TEMPLATE must contain %(user)s.")
    _user_filter = env_str("PORTAL_LDAP_USER_FILTER", "(uid=%(user)s)")
    if "%(user)s" not in _user_filter:
        raise ImproperlyConfigured("PORTAL_LDAP_USER_FILTER must contain %(user)s, e.g. (sAMAccountName=%(user)s).")
    _ca_file = env_str("PORTAL_LDAP_CA_FILE", "")
    if _ca_file and not Path(_ca_file).is_file():
        raise ImproperlyConfigured(f"PORTAL_LDAP_CA_FILE={_ca_file!r} is not a file.")
    PORTAL_LDAP = {
        "server_uri": PORTAL_LDAP_SERVER_URI,
        "start_tls": env_bool("PORTAL_LDAP_START_TLS", False),
        "ca_file": _ca_file,
        "bind_dn": env_str("PORTAL_LDAP_BIND_DN", ""),
        "bind_password": env_secret("PORTAL_LDAP_BIND_PASSWORD") or "",
        "user_dn_template": _user_dn_template,
        "user_search_base": _user_search_base,
        "user_filter": _user_filter,
        "group_search_base": env_str("PORTAL_LDAP_GROUP_SEARCH_BASE", ""),
        "group_filter": env_str("PORTAL_LDAP_GROUP_FILTER", "(objectClass=groupOfNames)"),
        "group_type": env_choice(
            "PORTAL_LDAP_GROUP_TYPE",
            "groupOfNames",
            ("groupOfNames", "nestedGroupOfNames", "activeDirectory", "nestedActiveDirectory", "posixGroup"),
        ),
        "group_map": _group_map("PORTAL_LDAP_GROUP_MAP"),
        "attributes": env_json_object("PORTAL_LDAP_USER_ATTRIBUTES")
        or {"first_name": "givenName", "last_name": "sn", "email": "mail"},
        "timeout": env_float("PORTAL_LDAP_TIMEOUT", 5.0, minimum=0.5, maximum=120.0),
    }
    if PORTAL_LDAP["start_tls"] and PORTAL_LDAP_SERVER_URI.startswith("ldaps://"):
        raise ImproperlyConfigured("PORTAL_LDAP_START_TLS=true with an ldaps:// URI: use one of the two.")
    AUTHENTICATION_BACKENDS.append("accounts.ldap_backend.PortalLDAPBackend")

# The provider's groups replace the portal groups they can map to (default), or are only added.
PORTAL_SSO_GROUP_SYNC = env_choice("PORTAL_SSO_GROUP_SYNC", "replace", ("replace", "add"))
# Only people with at least one mapped group may sign in; a refused account is deactivated.
PORTAL_SSO_REQUIRE_GROUP = env_bool("PORTAL_SSO_REQUIRE_GROUP", False)
# Create an account at a first sign-in, or only match existing accounts by verified e-mail.
PORTAL_SSO_CREATE_USERS = env_bool("PORTAL_SSO_CREATE_USERS", True)
# Passwords stored in the portal: off only while a company sign-in is configured; the
# break-glass users may still use theirs (so an admin gets in when the provider is down).
PORTAL_LOCAL_LOGIN = env_bool("PORTAL_LOCAL_LOGIN", True)
PORTAL_LOCAL_LOGIN_USERS = env_list("PORTAL_LOCAL_LOGIN_USERS", [])
if not PORTAL_LOCAL_LOGIN:
    if not PORTAL_OIDC and not PORTAL_LDAP:
        raise ImproperlyConfigured(
            "PORTAL_LOCAL_LOGIN=false needs a company sign-in (PORTAL_OIDC_PROVIDERS or PORTAL_LDAP_SERVER_URI), "
            "or nobody could sign in."
        )
    AUTHENTICATION_BACKENDS[:2] = ["accounts.backends.LocalPasswordBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalisation ---------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("PORTAL_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ----------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("PORTAL_STATIC_ROOT", str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS: list[Path | tuple[str, Path]] = [BASE_DIR / "static"]
# Front-end libraries come from npm (package.json) and are served from node_modules.
NODE_MODULES_DIR = BASE_DIR / "node_modules"
if NODE_MODULES_DIR.is_dir():
    STATICFILES_DIRS.append(("vendor", NODE_MODULES_DIR))
WHITENOISE_USE_FINDERS = True

# --- Security --------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("PORTAL_SESSION_AGE", 60 * 60 * 12, minimum=300)
if PRODUCTION:
    # The portal sits behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("PORTAL_SSL_REDIRECT", True)
    # Load balancers probe health over plain HTTP on the inside.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("PORTAL_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("PORTAL_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("PORTAL_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

# No inline scripts anywhere: pages load their code from /static/. No remote images either
# (a loaded image can carry a conversation out; see docs/chat.md): data: is only for the MFA
# setup page's QR code.
PORTAL_CSP = env_str(
    "PORTAL_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    f"form-action 'self'{_OIDC_FORM_ORIGINS}; frame-ancestors 'none'",
)

# Structured JSON lines (with the request id, passed through the audit redactors), or plain text.
LOG_FORMAT = env_choice("PORTAL_LOG_FORMAT", "json", ("json", "plain"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "portal.audit.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("PORTAL_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
    },
}

# --- Engine ----------------------------------------------------------------------------
ENGINE_VENV = Path(env_str("PORTAL_ENGINE_VENV", str(BASE_DIR / ".venv-engine")))
ENGINE_CONNECT_TIMEOUT = env_float("PORTAL_ENGINE_CONNECT_TIMEOUT", 5.0, minimum=0.1)
ENGINE_FIRST_TOKEN_TIMEOUT = env_float("PORTAL_ENGINE_FIRST_TOKEN_TIMEOUT", 120.0, minimum=1.0)
ENGINE_CHUNK_TIMEOUT = env_float("PORTAL_ENGINE_CHUNK_TIMEOUT", 60.0, minimum=1.0)
# A supervisor heartbeat older than this means its states are stale (engine counted stopped).
ENGINE_HEARTBEAT_TIMEOUT = env_float("PORTAL_ENGINE_HEARTBEAT_TIMEOUT", 30.0, minimum=5.0)
# Where prepared models (the demo model) and engine logs live.
ENGINE_MODELS_DIR = Path(env_str("PORTAL_ENGINE_MODELS_DIR", str(DATA_DIR / "models"))).resolve()
ENGINE_LOG_DIR = Path(env_str("PORTAL_ENGINE_LOG_DIR", str(DATA_DIR / "logs"))).resolve()
ENGINE_LOG_MAX_BYTES = env_int("PORTAL_ENGINE_LOG_MAX_BYTES", 10 * 1024 * 1024, minimum=64 * 1024)
ENGINE_LOG_BACKUPS = env_int("PORTAL_ENGINE_LOG_BACKUPS", 3, minimum=1, maximum=100)
# Managed engines listen on Unix sockets here (created 0700; a path too long for a socket
# falls back to a private directory under /tmp). See inference/engine_address.py.
ENGINE_SOCKET_DIR = Path(env_str("PORTAL_ENGINE_SOCKET_DIR", str(DATA_DIR / "run"))).resolve()
# Multi-node serving on purpose: the private address of the Ray head engines join. Only then
# is `--distributed-executor-backend ray` accepted (Ray's runtime has no authentication).
ENGINE_RAY_ADDRESS = env_str("PORTAL_ENGINE_RAY_ADDRESS", "")
# Supervisor: how often it reconciles, how it backs off after crashes, when it gives up.
ENGINE_TICK_SECONDS = env_float("PORTAL_ENGINE_TICK_SECONDS", 1.0, minimum=0.1, maximum=30.0)
ENGINE_RESTART_BACKOFF = env_float("PORTAL_ENGINE_RESTART_BACKOFF", 2.0, minimum=0.1)
ENGINE_RESTART_BACKOFF_MAX = env_float("PORTAL_ENGINE_RESTART_BACKOFF_MAX", 60.0, minimum=1.0)
ENGINE_MAX_CRASHES = env_int("PORTAL_ENGINE_MAX_CRASHES", 5, minimum=1, maximum=1000)
ENGINE_STABLE_SECONDS = env_float("PORTAL_ENGINE_STABLE_SECONDS", 120.0, minimum=1.0)
ENGINE_STOP_GRACE = env_float("PORTAL_ENGINE_STOP_GRACE", 20.0, minimum=1.0, maximum=600.0)
# Metrics samples for the charts: one per interval, kept for the retention.
ENGINE_METRICS_INTERVAL = env_float("PORTAL_ENGINE_METRICS_INTERVAL", 5.0, minimum=1.0)
ENGINE_METRICS_RETENTION = env_int("PORTAL_ENGINE_METRICS_RETENTION", 3600, minimum=60)
# /readyz: also require at least one ready engine (off: a loading engine keeps the web "ready").
ENGINE_REQUIRED_FOR_READY = env_bool("PORTAL_ENGINE_REQUIRED_FOR_READY", False)
# External engines (registered by address, not started by the portal; docs/scale.md).
# Hosts an external engine may be registered at: host names, *.domain, IP networks; empty: any.
EXTERNAL_ENGINE_ALLOWED = env_host_patterns("PORTAL_EXTERNAL_ENGINE_ALLOWED")
# How often the supervisor probes each external engine, and how long one request may take.
EXTERNAL_ENGINE_PROBE_SECONDS = env_float("PORTAL_EXTERNAL_ENGINE_PROBE_SECONDS", 5.0, minimum=0.5, maximum=300.0)
EXTERNAL_ENGINE_PROBE_TIMEOUT = env_float("PORTAL_EXTERNAL_ENGINE_PROBE_TIMEOUT", 5.0, minimum=0.5, maximum=60.0)

# --- Chat (chat app) -------------------------------------------------------------------
# Longest chat message and system prompt, in characters; longer ones are refused, not cut.
CHAT_MAX_MESSAGE_CHARS = env_int("PORTAL_CHAT_MAX_MESSAGE_CHARS", 32_000, minimum=1, maximum=1_000_000)
CHAT_MAX_SYSTEM_PROMPT_CHARS = env_int("PORTAL_CHAT_MAX_SYSTEM_PROMPT_CHARS", 8_000, minimum=0, maximum=1_000_000)
# Seconds an answer goes on streaming with no browser attached (a reload re-attaches).
CHAT_GRACE_SECONDS = env_float("PORTAL_CHAT_GRACE_SECONDS", 30.0, minimum=0.0, maximum=3600.0)
# Seconds a re-attaching socket waits for the process that runs the answer to answer.
CHAT_ATTACH_TIMEOUT = env_float("PORTAL_CHAT_ATTACH_TIMEOUT", 5.0, minimum=0.5, maximum=60.0)
# Conversations not updated for this many days are deleted by `manage.py purgechats`; 0 keeps them.
CHAT_RETENTION_DAYS = env_int("PORTAL_CHAT_RETENTION_DAYS", 0, minimum=0)
# Shared by the chat and the /v1 API (inference/generation.py).
GENERATION_FRAMES_PER_SECOND = env_float("PORTAL_FRAMES_PER_SECOND", 20.0, minimum=1.0, maximum=100.0)
# Seconds a finished answer keeps retrying its settlement while the database is down (the
# ledger, the stored answer and the audit event are written once it is back).
GENERATION_SETTLE_RETRY_SECONDS = env_float("PORTAL_SETTLE_RETRY_SECONDS", 60.0, minimum=0.0, maximum=3600.0)
GENERATION_MAX_TOKENS_LIMIT = env_int("PORTAL_MAX_TOKENS_LIMIT", 4096, minimum=1)
GENERATION_MAX_TOKENS_DEFAULT = env_int(
    "PORTAL_MAX_TOKENS_DEFAULT", min(1024, GENERATION_MAX_TOKENS_LIMIT), minimum=1, maximum=GENERATION_MAX_TOKENS_LIMIT
)

# --- WebSockets: Daphne's limits, passed by `python -m portal.daphne_server` (docs/websocket.md) ---
# Largest message Daphne accepts; a larger one closes the socket with 1009 before the portal
# reads it. The default leaves room for the longest chat frame (every character as \uXXXX).
WS_MAX_MESSAGE_BYTES = env_int(
    "PORTAL_WS_MAX_MESSAGE_BYTES",
    max(2**20, (CHAT_MAX_MESSAGE_CHARS + CHAT_MAX_SYSTEM_PROMPT_CHARS) * 6 + 65_536),
    minimum=4096,
)
# Daphne closes every socket this long after it opened: never later than the session ends.
WS_TIMEOUT = env_int("PORTAL_WS_TIMEOUT", SESSION_COOKIE_AGE, minimum=60, maximum=SESSION_COOKIE_AGE)
# An idle socket is pinged after this many seconds and closed when no pong comes back in time,
# so half-open connections (a laptop gone to sleep, a dropped NAT entry) do not pile up.
WS_PING_INTERVAL = env_int("PORTAL_WS_PING_INTERVAL", 20, minimum=1, maximum=3600)
WS_PING_TIMEOUT = env_int("PORTAL_WS_PING_TIMEOUT", 30, minimum=1, maximum=3600)

# --- Quotas (accounts/policies.py, accounts/ledger.py) -----------------------------------
# The site default policy: what a user in no group with a policy (and no override) gets.
# Unset means unlimited; PORTAL_DEFAULT_POLICY_MODELS empty means every served model.
DEFAULT_POLICY = {
    "model_names": env_list("PORTAL_DEFAULT_POLICY_MODELS", []),
    "tokens_per_day": env_optional_int("PORTAL_DEFAULT_POLICY_TOKENS_PER_DAY", minimum=0, maximum=10**12),
    "tokens_per_month": env_optional_int("PORTAL_DEFAULT_POLICY_TOKENS_PER_MONTH", minimum=0, maximum=10**12),
    "requests_per_day": env_optional_int("PORTAL_DEFAULT_POLICY_REQUESTS_PER_DAY", minimum=0, maximum=10**9),
    "requests_per_minute": env_optional_int("PORTAL_DEFAULT_POLICY_REQUESTS_PER_MINUTE", minimum=0, maximum=10**9),
    "concurrent_answers": env_optional_int("PORTAL_DEFAULT_POLICY_CONCURRENT_ANSWERS", minimum=1, maximum=10_000),
    "max_tokens_per_answer": env_optional_int("PORTAL_DEFAULT_POLICY_MAX_TOKENS_PER_ANSWER", minimum=1),
    "max_prompt_tokens": env_optional_int("PORTAL_DEFAULT_POLICY_MAX_PROMPT_TOKENS", minimum=1),
    "priority": env_optional_int("PORTAL_DEFAULT_POLICY_PRIORITY", minimum=-1_000_000, maximum=1_000_000),
}
# Seconds to wait for an engine's /tokenize before counting the prompt by its upper bound.
TOKENIZE_TIMEOUT = env_float("PORTAL_TOKENIZE_TIMEOUT", 2.0, minimum=0.1, maximum=30.0)
# django-ratelimit on the portal's own HTTP views: per user, per IP for anonymous requests.
HTTP_RATE_LIMIT = env_str("PORTAL_HTTP_RATE_LIMIT", "300/m")
if not re.fullmatch(r"[1-9][0-9]*/[1-9]?[0-9]*[smhd]", HTTP_RATE_LIMIT):
    raise ImproperlyConfigured(
        f"PORTAL_HTTP_RATE_LIMIT={HTTP_RATE_LIMIT!r} is not a rate: use requests/period, e.g. 300/m or 20/10s."
    )
RATELIMIT_USE_CACHE = "default"

# --- OpenAI-compatible API (inference/api/, docs/api.md) -----------------------------------
# Bodies above this many bytes are refused with 413 before they are parsed.
API_MAX_BODY_BYTES = env_int("PORTAL_API_MAX_BODY_BYTES", 1024 * 1024, minimum=1024, maximum=64 * 1024 * 1024)

# --- Audit trail (portal/audit, docs/audit.md) ------------------------------------------
# Audit events older than this many days are pruned by `manage.py audit retention`; 0 keeps them.
AUDIT_RETENTION_DAYS = env_int("PORTAL_AUDIT_RETENTION_DAYS", 0, minimum=0)
# PostgreSQL: commit transactions that write an event without waiting for the WAL flush
# (SET LOCAL synchronous_commit = off). The chain head is locked until commit, so this is
# what lets many writers through; a database crash can then lose the last moments of
# committed transactions, each with its event (never one without the other). docs/audit.md.
AUDIT_SYNCHRONOUS_COMMIT = env_bool("PORTAL_AUDIT_SYNCHRONOUS_COMMIT", True)
# Keep redacted prompt and answer text with generation events for this many days; 0 keeps none.
AUDIT_CONTENT_DAYS = env_int("PORTAL_AUDIT_CONTENT_DAYS", 0, minimum=0)
# The auditor pages' chain banner re-verifies the whole trail at most this often (seconds).
AUDIT_VERIFY_CACHE_SECONDS = env_int("PORTAL_AUDIT_VERIFY_CACHE_SECONDS", 60, minimum=0, maximum=86400)
