"""Monitoring pages (the health check, Prometheus metrics, the staff Performance page) and the
favicon at the address browsers ask for by themselves."""

import hmac

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics


@require_GET
def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def favicon(request):
    """/favicon.ico, which browsers and feed readers fetch without being told: the static icon.

    Pages link the SVG icon; this answers those who ask anyway instead of logging a 404. A
    temporary redirect, cached for a day, since the static name changes with each release."""
    response = HttpResponseRedirect(static("favicon.ico"))
    response["Cache-Control"] = "public, max-age=86400"
    return response


def _metrics_token_ok(request) -> bool:
    token = settings.RPCHAT["METRICS_TOKEN"]
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(token)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.encode())
    )


@never_cache
@require_GET
def prometheus_metrics(request):
    """Prometheus text format, for staff sessions or `Authorization: Bearer $RPCHAT_METRICS_TOKEN`."""
    if not _metrics_token_ok(request):
        if not request.user.is_authenticated:
            response = HttpResponse(
                "Log in as staff or send the metrics token.\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not (request.user.is_active and request.user.is_staff):
            return HttpResponse("Staff only.\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)


@never_cache
@staff_member_required
def performance(request):
    """Latency, queries, cache hit rate, generation speed and memory of this worker, for staff."""
    return render(request, "core/performance.html", {"snap": metrics.snapshot()})


@never_cache
@staff_member_required
def performance_data(request):
    return JsonResponse(metrics.snapshot())
