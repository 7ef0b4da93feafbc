"""The library's pages (list, new, edit, delete) and the JSON the composer's dialog reads; members only."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.access import role_required
from prompt_library import library
from prompt_library.forms import PromptTemplateForm


@require_GET
@role_required("member")
def template_list(request: HttpRequest) -> HttpResponse:
    return render(request, "prompt_library/list.html", {"templates": library.visible_to(request.user)})


@require_http_methods(["GET", "POST"])
@role_required("member")
def template_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    instance = library.editable(request.user, pk) if pk is not None else None
    form = PromptTemplateForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        template = form.save_for(request.user)
        messages.success(request, f"Saved “{template.title}”.")
        return redirect("prompt-library:list")
    return render(
        request, "prompt_library/edit.html", {"form": form, "template": instance}, status=400 if form.errors else 200
    )


@require_POST
@role_required("member")
def template_delete(request: HttpRequest, pk: int) -> HttpResponse:
    template = library.editable(request.user, pk)
    template.delete()
    messages.success(request, f"Deleted “{template.title}”.")
    return redirect("prompt-library:list")


@require_GET
@role_required("member")
def api_templates(request: HttpRequest) -> JsonResponse:
    templates = [library.as_json(template, request.user) for template in library.visible_to(request.user)]
    return JsonResponse({"templates": templates})
