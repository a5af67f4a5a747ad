"""The root URLs: each app's own urls.py under its first path segment, so a URL leads to its view in one hop."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from chats.views import search
from core import views as core_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="characters:gallery"), name="home"),
    path("accounts/", include("settings_app.account_urls")),
    path("accounts/", include("settings_app.urls")),
    path("characters/", include("characters.urls")),
    path("chats/", include("chats.urls")),
    path("personas/", include("settings_app.persona_urls")),
    path("presets/", include("settings_app.preset_urls")),
    path("search/", search.search, name="search"),
    path("api/", include("rpchat.api_urls")),
    path("admin/", admin.site.urls),
    path("healthz", core_views.healthz, name="healthz"),
    path("favicon.ico", core_views.favicon, name="favicon"),
    path("metrics", core_views.prometheus_metrics, name="metrics"),
    path("performance/", core_views.performance, name="performance"),
    path("performance/data/", core_views.performance_data, name="performance_data"),
]

if "debug_toolbar" in settings.INSTALLED_APPS:
    urlpatterns.append(path("__debug__/", include("debug_toolbar.urls")))
if "silk" in settings.INSTALLED_APPS:
    urlpatterns.append(path("silk/", include("silk.urls", namespace="silk")))
