from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import condition, require_GET

from settings_app.models import SiteSettings


class SignupForm(UserCreationForm):
    username = forms.CharField(max_length=150, help_text="Letters, digits and @/./+/-/_ only.")


@never_cache
@csrf_protect
def signup(request):
    if not SiteSettings.load().allow_signup:
        raise Http404("Sign-up is closed on this instance. Ask its operator for an account.")
    if request.user.is_authenticated:
        return redirect("characters:gallery")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}. Pick a character to chat with.")
        return redirect("characters:gallery")
    return render(request, "registration/signup.html", {"form": form})


@require_GET
def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


OPENAPI_PATH = settings.BASE_DIR / "docs" / "openapi.json"


def _openapi_etag(request) -> str:
    stat = OPENAPI_PATH.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


@require_GET
@condition(etag_func=_openapi_etag)
def openapi_schema(request):
    """The API's OpenAPI 3 description (docs/openapi.json), readable without logging in."""
    response = HttpResponse(OPENAPI_PATH.read_bytes(), content_type="application/json")
    response["Cache-Control"] = "public, max-age=300"
    return response
