from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from chats import views as chat_views

from . import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="characters:gallery"), name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("characters/", include("characters.urls")),
    path("chats/", include("chats.urls")),
    path("search/", chat_views.search, name="search"),
    path("account/", include("settings_app.urls")),
    path("api/", include("rpchat.api_urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
]

if "debug_toolbar" in settings.INSTALLED_APPS:
    urlpatterns.append(path("__debug__/", include("debug_toolbar.urls")))
if "silk" in settings.INSTALLED_APPS:
    urlpatterns.append(path("silk/", include("silk.urls", namespace="silk")))
