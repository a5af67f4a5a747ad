from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .forms import PersonaForm
from .models import Persona
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


@login_required
@require_POST
def persona_delete(request, code):
    persona = _get_persona_for_user(request, code)
    persona.delete()
    messages.success(request, f"Persona “{persona.name}” deleted. Chats that used it now use your username.")
    return redirect("personas:list")
