"""The one page where staff read someone's conversation: a reason first, then the content."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts.roles import is_admin
from chat.conversations import ChatRejected
from chat.staff_access import MAX_REASON, read_for_staff
from portal.audit.trail import client_ip


@require_http_methods(["GET", "POST"])
def read_conversation(request: HttpRequest, pk: int) -> HttpResponse:
    if not is_admin(request.user):
        raise PermissionDenied("Only admins may read other people's conversations.")
    context = {"pk": pk, "max_reason": MAX_REASON, "error": "", "conversation": None}
    if request.method == "GET":
        return render(request, "chat/staff_read.html", context)
    try:
        context["conversation"] = read_for_staff(request.user, pk, request.POST.get("reason"), ip=client_ip(request))
    except ChatRejected as exc:
        if exc.code == "not_found":
            raise Http404("No such conversation.") from None
        context["error"] = exc.message
        return render(request, "chat/staff_read.html", context, status=400)
    return render(request, "chat/staff_read.html", context)
