import hmac

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from settings_app.models import SiteSettings

from . import metrics


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


# --- monitoring --------------------------------------------------------------------------------


def _metrics_token_ok(request) -> bool:
    token = settings.RPCHAT["METRICS_TOKEN"]
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def prometheus_metrics(request):
    """Prometheus text format, for staff sessions or `Authorization: Bearer $RPCHAT_METRICS_TOKEN`."""
    if not _metrics_token_ok(request):
        if not request.user.is_authenticated:
            response = HttpResponse("Log in as staff or send the metrics token.\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not (request.user.is_active and request.user.is_staff):
            return HttpResponse("Staff only.\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)


@never_cache
@staff_member_required
def performance(request):
    """Latency, queries, cache hit rate, generation speed and memory of this worker, for staff."""
    return render(request, "rpchat/performance.html", {"snap": metrics.snapshot()})


@never_cache
@staff_member_required
def performance_data(request):
    return JsonResponse(metrics.snapshot())
