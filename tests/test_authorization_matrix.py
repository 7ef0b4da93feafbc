"""The authorization matrix: every route of the URL configuration and every WebSocket route,
found by walking them at collection time, against a table of who may use it.

A route without an entry in :data:`HTTP_RULES` (or :data:`WS_RULES`) fails with a message
naming it, so no route can be added without saying who may use it. Routes of plugins that
the table does not list are held to the default rule of plugin routes (docs/plugins.md):
members only, anonymous visitors sent to log in, auditors refused.

The cast: anonymous, alice (member, owner of every object), bob (another member), audrey
(auditor), adam (admin), alice's API key sent without a session, and her revoked key. Each
route is asked with GET and with POST as each of them. Objects in a route (conversations, API
keys, prompt templates, audit events, engines) are alice's, so bob and adam asking for them
must get a 404, like a missing one; a refused request changes nothing (the rows are compared).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any
from urllib.parse import urlparse

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern
from prompt_library.models import PromptTemplate

from accounts import api_keys
from accounts.models import ApiKey
from accounts.roles import ADMINS, AUDITORS, MEMBERS
from chat.models import Conversation, Message
from inference.models import EngineConfig
from portal.audit.trail import record
from portal.registry import registry
from tests.websocket import open_socket

pytestmark = pytest.mark.django_db

ANONYMOUS = "anonymous"
OWNER = "member (owner)"
OTHER = "another member"
AUDITOR = "auditor"
ADMIN = "admin"
KEY = "API key, no session"
REVOKED = "revoked API key"
PERSONAS = (ANONYMOUS, OTHER, AUDITOR, ADMIN, KEY, REVOKED, OWNER)  # the owner last: its POSTs change things

# What a response must be. OK is the rule's own status for the method; LOGIN a redirect to
# a login page (the portal's, or Django admin's, which sends on to the portal's); SERVED any
# answer below 500 that is not such a redirect, for pages whose details are a library's
# business (Django admin, allauth); ANSWERED any answer below 500 (allauth's sign-in steps).
LOGIN = "login"
LOGIN_PAGES = ("/accounts/login/", "/admin/login/")
SERVED = "served"
ANSWERED = "answered"
OK = "ok"
Outcome = int | str | frozenset[int]
REFUSED_METHOD = frozenset({403, 405})


# --- who may do what ----------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """A kind of access: the outcome of a request by each persona (with the route's method)."""

    name: str
    outcomes: Mapping[str, Outcome]
    # Personas who hold the role (a method the route does not take is a 405 for them).
    holders: frozenset[str] = frozenset()


_SESSIONLESS = {ANONYMOUS: LOGIN, KEY: LOGIN, REVOKED: LOGIN}
PUBLIC = Access("public", dict.fromkeys(PERSONAS, OK), frozenset(PERSONAS))
LOGGED_IN = Access(
    "logged in",
    {**_SESSIONLESS, OWNER: OK, OTHER: OK, AUDITOR: OK, ADMIN: OK},
    frozenset({OWNER, OTHER, AUDITOR, ADMIN}),
)
MEMBER = Access(
    "members", {**_SESSIONLESS, OWNER: OK, OTHER: OK, AUDITOR: 403, ADMIN: OK}, frozenset({OWNER, OTHER, ADMIN})
)
# An object of alice's: everyone else who may use such objects is told it does not exist.
OWNED = Access(
    "the owner", {**_SESSIONLESS, OWNER: OK, OTHER: 404, AUDITOR: 403, ADMIN: 404}, frozenset({OWNER, OTHER, ADMIN})
)
AUDITORS_ONLY = Access(
    "auditors", {**_SESSIONLESS, OWNER: 403, OTHER: 403, AUDITOR: OK, ADMIN: OK}, frozenset({AUDITOR, ADMIN})
)
ADMINS_ONLY = Access("admins", {**_SESSIONLESS, OWNER: 403, OTHER: 403, AUDITOR: 403, ADMIN: OK}, frozenset({ADMIN}))
# Django admin has one gate for all its pages (staff, which the Admins group grants): there
# another member and the keys would only repeat the member and the anonymous visitor, and
# with a hundred routes each request counts.
DJANGO_ADMIN = Access("Django admin", {ANONYMOUS: LOGIN, OWNER: LOGIN, AUDITOR: LOGIN, ADMIN: OK}, frozenset({ADMIN}))
# /v1: the key is the only credential; a session does not count.
API_KEY = Access("API key", {**dict.fromkeys(PERSONAS, 401), KEY: OK}, frozenset(PERSONAS))
# /metrics: the metrics token or a staff session; an API key is a wrong token.
METRICS = Access(
    "metrics",
    {ANONYMOUS: 401, KEY: 401, REVOKED: 401, OWNER: 403, OTHER: 403, AUDITOR: 403, ADMIN: OK},
    frozenset(PERSONAS),
)


@dataclass(frozen=True)
class Rule:
    """The expectation of one route: its access, its answer per method, what to send.

    ``ok`` maps each method the route takes to the status its users get; a method it does not
    take is refused (405, or 403 before the method is looked at). ``values`` gives the URL's
    parameters from the world; ``post`` the form (or JSON) a POST sends.
    """

    access: Access
    ok: Mapping[str, Outcome] = field(default_factory=lambda: {"GET": 200})
    values: Callable[[World, Route], Mapping[str, Any]] = lambda world, route: {}
    post: Callable[[World], Mapping[str, Any]] = lambda world: {}
    json: bool = False


# --- the world: the cast and alice's objects -------------------------------------------------


@dataclass
class World:
    users: dict[str, Any]
    jars: dict[str, SimpleCookie]
    secrets: dict[str, str]
    conversation: Conversation
    key: ApiKey
    private_template: PromptTemplate
    shared_template: PromptTemplate
    event_seq: int
    engine: EngineConfig

    def snapshot(self) -> list[Any]:
        """The rows a refused request must not change."""
        return [
            list(Conversation.objects.values().order_by("pk")),
            list(Message.objects.values().order_by("pk")),
            list(ApiKey.objects.values("pk", "owner_id", "name", "revoked_at").order_by("pk")),
            list(PromptTemplate.objects.values("pk", "owner_id", "title", "body", "shared").order_by("pk")),
            list(EngineConfig.objects.values("pk", "name", "desired_state").order_by("pk")),
        ]


# One client for the whole module, with a cookie jar per persona: a new client loads the
# middleware again, and WhiteNoise's start-up (it lists every static file) would cost more
# than the requests.
_CLIENT = Client()


def session_of(user: Any) -> str:
    """Return the key of a new session logged in as ``user``: what ``force_login`` stores.

    Without the login itself: its signal writes an audit event and stamps ``last_login``,
    which the matrix does not look at and which made up a third of its time.
    """
    session = import_module(django_settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = django_settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return str(session.session_key)


@pytest.fixture
def world(settings: Any, user_factory: Callable[..., Any]) -> World:
    # The cast logs in with force_login: a fast hasher keeps making five users cheap.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    users = {
        OWNER: user_factory("alice", MEMBERS),
        OTHER: user_factory("bob", MEMBERS),
        AUDITOR: user_factory("audrey", AUDITORS),
        ADMIN: user_factory("adam", ADMINS),
    }
    alice = users[OWNER]
    conversation = Conversation.objects.create(owner=alice, title="Alice's plans")
    Message.objects.create(conversation=conversation, role="user", content="A secret of alice's")
    key, secret = api_keys.create_key(alice, "laptop")
    revoked, revoked_secret = api_keys.create_key(alice, "old laptop")
    api_keys.revoke(revoked)
    jars = {persona: SimpleCookie() for persona in PERSONAS}
    for persona, user in users.items():
        jars[persona][django_settings.SESSION_COOKIE_NAME] = session_of(user)
    return World(
        users=users,
        jars=jars,
        secrets={KEY: secret, REVOKED: revoked_secret},
        conversation=conversation,
        key=key,
        private_template=PromptTemplate.objects.create(owner=alice, title="Alice only", body="x", shared=False),
        shared_template=PromptTemplate.objects.create(owner=alice, title="Team", body="Hi {{name}}", shared=True),
        event_seq=record("engine.config_changed", target="e1", data={"before": {}, "after": {}}).seq,
        engine=EngineConfig.objects.create(name="e1", served_model_name="m1", model="/models/m1"),
    )


# --- the routes, as the URL configuration and the WebSocket router have them -----------------


@dataclass(frozen=True)
class Route:
    """One URL pattern: its key in the table (the namespaced name, or the pattern), its route."""

    key: str
    route: str
    pattern: URLPattern

    def __str__(self) -> str:
        return f"{self.key} (/{self.route})"


def _walk(patterns: list[Any], prefix: str = "", namespaces: tuple[str, ...] = ()) -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            namespace = (entry.namespace,) if entry.namespace else ()
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), namespaces + namespace)
        else:
            route = prefix + str(entry.pattern)
            key = ":".join((*namespaces, entry.name)) if entry.name else route
            yield Route(key, route, entry)


def http_routes() -> list[Route]:
    """Every route of the URL configuration (the apps' and plugins' mounts, allauth, admin)."""
    return list(_walk(get_resolver().url_patterns))


def websocket_routes() -> list[str]:
    """Every WebSocket route the ASGI router serves, as a path pattern (plugins' nested ones too)."""

    def walk(patterns: Any, prefix: str) -> Iterator[str]:
        for entry in patterns:
            here = prefix + str(entry.pattern)
            if isinstance(entry.callback, URLRouter):
                yield from walk(entry.callback.routes, here)
            else:
                yield here

    return list(walk(registry["websocket_routes"], ""))


_PARAMETER = re.compile(r"<(?:\w+:)?(?P<name>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)")


def fill(route: str, values: Mapping[str, Any]) -> str:
    """Return the path of ``route`` with its parameters set from ``values`` (anchors dropped)."""

    def value(match: re.Match[str]) -> str:
        return str(values[match.group("name") or match.group("group")])

    return "/" + _PARAMETER.sub(value, route).replace("^", "").replace("$", "")


def parameters(route: str) -> set[str]:
    return {match.group("name") or match.group("group") for match in _PARAMETER.finditer(route)}


# --- the table -----------------------------------------------------------------------------

# Allauth's steps of signing in, out and resetting a password: anyone may reach them.
SIGN_IN_FLOW = Access("sign-in steps", dict.fromkeys(PERSONAS, ANSWERED), frozenset(PERSONAS))
BOTH = {"GET": SERVED, "POST": SERVED}
GET_ONLY = {"GET": 200}


def conversation(world: World, route: Route) -> dict[str, Any]:
    return {"pk": world.conversation.pk}


def private_template(world: World, route: Route) -> dict[str, Any]:
    return {"pk": world.private_template.pk}


HTTP_RULES: dict[str, Rule] = {
    # portal
    "home": Rule(LOGGED_IN),
    "healthz": Rule(PUBLIC),
    # Ready or not (503) depends on the engines; either way it answers everyone.
    "readyz": Rule(PUBLIC, ok={"GET": frozenset({200, 503})}),
    "metrics": Rule(METRICS),
    "plugins": Rule(ADMINS_ONLY),
    # audit
    "audit:events": Rule(AUDITORS_ONLY),
    "audit:event": Rule(AUDITORS_ONLY, values=lambda world, route: {"seq": world.event_seq}),
    "audit:export": Rule(AUDITORS_ONLY, values=lambda world, route: {"fmt": "csv"}),
    "audit:usage": Rule(AUDITORS_ONLY),
    # accounts
    "account": Rule(LOGGED_IN),
    "usage:page": Rule(LOGGED_IN),
    "api-keys": Rule(MEMBER, ok={"GET": 200, "POST": 200}, post=lambda world: {"name": "ci", "expires": "30"}),
    "api-key-revoke": Rule(OWNED, ok={"POST": 302}, values=lambda world, route: {"pk": world.key.pk}),
    # inference
    "inference:engines": Rule(ADMINS_ONLY),
    "inference:status-json": Rule(ADMINS_ONLY),
    "inference:add-external": Rule(ADMINS_ONLY, ok={"GET": 200, "POST": 200}),  # an empty form: shown again
    "inference:engine": Rule(ADMINS_ONLY, values=lambda world, route: {"name": world.engine.name}),
    "inference:metrics-json": Rule(ADMINS_ONLY, values=lambda world, route: {"name": world.engine.name}),
    "inference:engine-action": Rule(
        ADMINS_ONLY, ok={"POST": 302}, values=lambda world, route: {"name": world.engine.name, "action": "stop"}
    ),
    # /v1: a valid key passes; the empty body is then refused before any engine is asked.
    "api:models": Rule(API_KEY),
    "api:chat-completions": Rule(API_KEY, ok={"POST": 400}, json=True),
    "api:not-found": Rule(PUBLIC, ok={"GET": 404, "POST": 404}, values=lambda world, route: {"path": "embeddings"}),
    # chat
    "chat:index": Rule(MEMBER),
    "chat:conversation": Rule(OWNED, values=conversation),
    "chat:api-list": Rule(MEMBER),
    "chat:api-detail": Rule(OWNED, values=conversation),
    "chat:api-rename": Rule(
        OWNED, ok={"POST": 200}, values=conversation, post=lambda world: {"title": "Mine"}, json=True
    ),
    "chat:api-delete": Rule(OWNED, ok={"POST": 200}, values=conversation),
    "chat:staff-read": Rule(
        ADMINS_ONLY,
        ok={"GET": 200, "POST": 200},
        values=conversation,
        post=lambda world: {"reason": "A complaint, ticket 42"},
    ),
    # the prompt-library plugin
    "prompt-library:list": Rule(MEMBER),
    "prompt-library:new": Rule(MEMBER, ok={"GET": 200, "POST": 302}, post=lambda world: {"title": "T", "body": "b"}),
    "prompt-library:edit": Rule(
        OWNED, ok={"GET": 200, "POST": 302}, values=private_template, post=lambda world: {"title": "T", "body": "b"}
    ),
    "prompt-library:delete": Rule(OWNED, ok={"POST": 302}, values=private_template),
    "prompt-library:api-templates": Rule(MEMBER),
    # allauth: the steps of signing in (anyone) ...
    **dict.fromkeys(
        [
            "account_login",
            "account_logout",
            "account_inactive",
            "account_signup",
            "account_reset_password",
            "account_email_verification_sent",
            "account_confirm_login_code",
            "account_reset_password_done",
            "account_reset_password_from_key_done",
            "mfa_authenticate",
            "socialaccount_login_cancelled",
            "socialaccount_signup",
        ],
        Rule(SIGN_IN_FLOW, ok=BOTH),
    ),
    "account_confirm_email": Rule(SIGN_IN_FLOW, ok=BOTH, values=lambda world, route: {"key": "no-such-key"}),
    "account_reset_password_from_key": Rule(
        SIGN_IN_FLOW, ok=BOTH, values=lambda world, route: {"uidb36": "1", "key": "no-such-key"}
    ),
    **dict.fromkeys(
        ["openid_connect_login", "openid_connect_callback"],
        Rule(SIGN_IN_FLOW, ok=BOTH, values=lambda world, route: {"provider_id": "no-such-provider"}),
    ),
    # ... and the pages of a signed-in user's own account.
    **dict.fromkeys(
        [
            "account_reauthenticate",
            "account_email",
            "account_change_password",
            "account_set_password",
            "mfa_index",
            "mfa_reauthenticate",
            "mfa_activate_totp",
            "mfa_deactivate_totp",
            "mfa_view_recovery_codes",
            "mfa_generate_recovery_codes",
            "mfa_download_recovery_codes",
            "socialaccount_login_error",
            "socialaccount_connections",
            "accounts/social/login/cancelled/",
            "accounts/social/login/error/",
            "accounts/social/signup/",
            "accounts/social/connections/",
        ],
        Rule(LOGGED_IN, ok=BOTH),
    ),
    # Django admin's login goes through allauth, which refuses signed-in users who are not staff.
    "admin:login": Rule(
        Access("admin login", {**_SESSIONLESS, OWNER: 403, OTHER: 403, AUDITOR: 403, ADMIN: OK}, frozenset({ADMIN})),
        ok=BOTH,
    ),
    "admin:logout": Rule(LOGGED_IN, ok=BOTH),
}


def _admin_values(world: World, route: Route) -> dict[str, Any]:
    """Parameters of a Django admin route: an existing row of its model where it has one."""
    from django.apps import apps

    values: dict[str, Any] = {"url": "no-such-page/", "app_label": "chat", "id": world.users[OWNER].pk}
    values["content_type_id"] = ContentType.objects.get_for_model(Conversation).pk
    values["object_id"] = world.conversation.pk
    parts = route.route.split("/")
    if len(parts) > 3 and "<" not in parts[1] + parts[2]:
        try:
            model = apps.get_model(parts[1], parts[2])
        except LookupError:
            return values
        first = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
        values["object_id"] = first if first is not None else 1
    return values


# Every page of Django admin: staff only (the Admins group); a new ModelAdmin is covered here.
DJANGO_ADMIN_RULE = Rule(DJANGO_ADMIN, ok=BOTH, values=_admin_values)
# A plugin route the table does not list: members only (docs/plugins.md). Parameters are
# set to 0: a member may get a 404 for it, an auditor must still get the 403.
PLUGIN_DEFAULT_RULE = Rule(MEMBER, ok=BOTH, values=lambda world, route: dict.fromkeys(parameters(route.route), 0))


def rule_for(route: Route) -> Rule | None:
    """The table's entry for ``route``, the rule of Django admin or of plugins, or None."""
    if route.key in HTTP_RULES:
        return HTTP_RULES[route.key]
    if route.key.startswith("admin:") or route.route.startswith("admin/"):
        return DJANGO_ADMIN_RULE
    if route.key.split(":")[0] in registry["plugins"]:
        return PLUGIN_DEFAULT_RULE
    return None


# --- checking one route -------------------------------------------------------------------


def expected(rule: Rule, persona: str, method: str) -> Outcome:
    outcome = rule.access.outcomes[persona]
    if method in rule.ok:
        return rule.ok[method] if outcome == OK else outcome
    # A method the route does not take: refused before anything is looked up.
    if outcome == LOGIN:
        return LOGIN
    return 405 if persona in rule.access.holders else REFUSED_METHOD


def _is_login(response: Any) -> bool:
    return bool(response.status_code == 302 and urlparse(response["Location"]).path in LOGIN_PAGES)


def meets(response: Any, outcome: Outcome) -> bool:
    status: int = response.status_code
    if outcome == LOGIN:
        return _is_login(response)
    if outcome == SERVED:
        return status < 500 and not _is_login(response)
    if outcome == ANSWERED:
        return status < 500
    if isinstance(outcome, frozenset):
        return status in outcome
    return status == outcome


def send(world: World, rule: Rule, persona: str, method: str, path: str) -> Any:
    client = _CLIENT
    client.cookies = world.jars[persona]
    headers = {"Authorization": f"Bearer {world.secrets[persona]}"} if persona in world.secrets else {}
    if method == "GET":
        return client.get(path, headers=headers)
    data = rule.post(world)
    if rule.json:
        return client.post(path, json.dumps(data), content_type="application/json", headers=headers)
    return client.post(path, data, headers=headers)


def _describe(response: Any) -> str:
    where = f" to {response['Location']}" if response.status_code in (301, 302) else ""
    return f"{response.status_code}{where}"


@pytest.mark.parametrize("route", http_routes(), ids=str)
def test_each_route_answers_each_persona_as_the_table_says(route: Route, world: World) -> None:
    rule = rule_for(route)
    assert rule is not None, (
        f"the route {route} has no entry in HTTP_RULES of tests/test_authorization_matrix.py: "
        "say who may use it (docs/architecture.md, 'Authorization')"
    )
    path = fill(route.route, rule.values(world, route))
    match = resolve(path)
    assert (match.func, match.url_name) == (route.pattern.callback, route.pattern.name), (
        f"{path} does not reach {route}"
    )

    failures: list[str] = []
    before = world.snapshot()

    def ask(persona: str, method: str) -> None:
        outcome = expected(rule, persona, method)
        response = send(world, rule, persona, method, path)
        if response.streaming:
            b"".join(response)  # an export streams; read it through
        if not meets(response, outcome):
            failures.append(f"{method} {path} as {persona}: expected {outcome}, got {_describe(response)}")

    personas = [persona for persona in PERSONAS if persona in rule.access.outcomes]
    for persona in personas:
        ask(persona, "GET")
    allowed = [p for p in personas if "POST" in rule.ok and rule.access.outcomes[p] == OK]
    for persona in personas:
        if persona not in allowed:
            ask(persona, "POST")
    assert not failures, "\n".join(failures)
    assert world.snapshot() == before, f"a refused request to {path} changed something"
    for persona in allowed:
        ask(persona, "POST")
    assert not failures, "\n".join(failures)


def test_every_route_has_an_expectation() -> None:
    missing = [str(route) for route in http_routes() if rule_for(route) is None]
    assert not missing, "routes without an entry in HTTP_RULES: " + ", ".join(missing)


def test_a_route_nobody_described_is_named_and_a_plugins_route_gets_the_plugin_rule() -> None:
    unknown = Route("reports:index", "reports/", URLPattern(RoutePattern("reports/"), lambda request: None))
    assert rule_for(unknown) is None
    plugin = Route("dummy:secret", "plugins/dummy/secret/", URLPattern(RoutePattern("secret/"), lambda request: None))
    assert rule_for(plugin) is PLUGIN_DEFAULT_RULE


def test_the_table_lists_no_route_that_is_gone() -> None:
    keys = {route.key for route in http_routes()}
    assert sorted(set(HTTP_RULES) - keys) == []


# --- WebSocket routes ------------------------------------------------------------------------

# Close codes of portal.consumers: 4401 without a login, 4403 without the role.
ACCEPTED = "accepted"
WS_LOGGED_IN = {ANONYMOUS: 4401, OWNER: ACCEPTED, AUDITOR: ACCEPTED, ADMIN: ACCEPTED}
WS_MEMBERS = {ANONYMOUS: 4401, OWNER: ACCEPTED, AUDITOR: 4403, ADMIN: ACCEPTED}
WS_RULES: dict[str, dict[str, Any]] = {
    "ws/chat/": WS_MEMBERS,
    "ws/status/": WS_LOGGED_IN,
}


def ws_rule_for(route: str) -> dict[str, Any] | None:
    """The table's entry for a WebSocket route; a plugin's socket defaults to members only."""
    if route in WS_RULES:
        return WS_RULES[route]
    if route.startswith("ws/plugins/"):
        return WS_MEMBERS
    return None


def test_the_apps_socket_routes_are_all_served() -> None:
    from chat.routing import websocket_urlpatterns as chat_routes
    from inference.ws_routes import websocket_urlpatterns as inference_routes
    from portal.routing import websocket_urlpatterns as served

    assert served == list(registry["websocket_routes"])
    for route in [*chat_routes, *inference_routes]:
        assert route in served, f"{route.pattern} is not in the registry's websocket_routes"


def test_every_socket_route_has_an_expectation() -> None:
    missing = [route for route in websocket_routes() if ws_rule_for(route) is None]
    assert not missing, "WebSocket routes without an entry in WS_RULES: " + ", ".join(missing)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", websocket_routes())
def test_each_socket_route_lets_in_whom_the_table_says(route: str, user_factory: Callable[..., Any]) -> None:
    rule = ws_rule_for(route)
    assert rule is not None, f"the WebSocket route /{route} has no entry in WS_RULES"
    users = {OWNER: user_factory("alice"), AUDITOR: user_factory("audrey", AUDITORS)}
    users[ADMIN] = user_factory("adam", ADMINS)

    async def connect(persona: str) -> str | int | None:
        communicator, connected, code = await open_socket("/" + route, users.get(persona))
        await communicator.disconnect()
        return ACCEPTED if connected else code

    seen = {persona: async_to_sync(connect)(persona) for persona in rule}
    assert seen == rule
