from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from .auth import api_token_create, api_token_revoke
from .forms import PersonaForm
from .models import ApiToken, Persona
from .services import persona_save


def _get_persona_for_user(request, code) -> Persona:
    return get_object_or_404(Persona, user=request.user, code=code)


@login_required
def persona_list(request):
    personas = Persona.objects.filter(user=request.user).only("code", "name", "description", "is_default")
    return render(request, "settings_app/personas.html", {"personas": personas})


@login_required
def persona_edit(request, code=None):
    persona = _get_persona_for_user(request, code) if code else Persona(user=request.user)
    form = PersonaForm(request.POST or None, instance=persona)
    if request.method == "POST" and form.is_valid():
        persona_save(persona=form.save(commit=False))
        messages.success(request, f"Persona “{persona.name}” saved.")
        return redirect("personas:list")
    return render(request, "settings_app/persona_form.html", {"form": form, "persona": persona})


def _get_token_for_user(request, pk) -> ApiToken:
    """The user's own token, or 404."""
    return get_object_or_404(ApiToken, pk=pk, user=request.user)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request):
    """List the user's tokens; POST makes one and shows it on this response only."""
    created = None
    error = ""
    if request.method == "POST":
        try:
            token, raw = api_token_create(user=request.user, name=request.POST.get("name", ""))
        except ValueError as exc:
            error = str(exc)
        else:
            created = {"token": token, "raw": raw}
    tokens = ApiToken.objects.filter(user=request.user).only(
        "id", "name", "prefix", "created_at", "last_used_at"
    )
    return render(
        request,
        "settings_app/api_tokens.html",
        {"tokens": tokens, "created": created, "error": error},
        status=400 if error else 200,
    )


@login_required
@require_POST
def persona_delete(request, code):
    persona = _get_persona_for_user(request, code)
    persona.delete()
    messages.success(request, f"Persona “{persona.name}” deleted. Chats that used it now use your username.")
    return redirect("personas:list")


@login_required
@require_POST
def api_token_delete(request, pk):
    token = _get_token_for_user(request, pk)
    api_token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” revoked. Apps using it can no longer reach the API.")
    return redirect("settings_app:api_tokens")
