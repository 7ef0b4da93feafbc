"""Who may read ``/metrics``: the bearer token of ``PORTAL_METRICS_TOKEN``, or a staff session.

The figures name models, engines and hosts and show who is busy, so nobody else may read
them; a refusal carries no metrics at all.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def _refusal(status: int, text: str) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def metrics_access(request: HttpRequest) -> HttpResponse | None:
    """Return None when ``request`` may read the metrics, else the 401/403 response to send.

    A request that sends a token is judged by the token alone (a wrong token is 401 even with
    a staff session), so a misconfigured scraper is noticed instead of passing by accident.
    """
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        expected = settings.PORTAL_METRICS_TOKEN
        if scheme.lower() != "bearer" or not expected or not secrets.compare_digest(token.strip(), expected):
            return _refusal(401, "The metrics token is wrong or not configured.\n")
        return None
    user = request.user
    if not user.is_authenticated:
        return _refusal(401, "Send the metrics token (Authorization: Bearer ...) or log in as staff.\n")
    if not user.is_staff:
        return _refusal(403, "Only staff and the metrics token may read the metrics.\n")
    return None
