from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm, UsernameField
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET

from core import ratelimit
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


@login_required
@require_GET
def account_settings(request):
    return render(request, "registration/settings.html")


class LoginView(auth_views.LoginView):
    """Django's login, refusing a username and address after too many failures in a window."""

    def _key(self) -> str:
        # The username as authentication reads it (the form strips it and NFKC-normalizes it, as
        # AbstractBaseUser.normalize_username does), so "olivia " or a full-width "olivia" count
        # as "olivia"; lower-cased as well, so that case variants share one count too.
        username = UsernameField().to_python(self.request.POST.get("username")).lower()
        return f"{self.request.META.get('REMOTE_ADDR', '')}:{username}"

    def post(self, request, *args, **kwargs):
        opts = settings.RPCHAT
        wait = ratelimit.blocked(
            "login", self._key(), limit=opts["LOGIN_ATTEMPTS"], window=opts["LOGIN_WINDOW"]
        )
        if wait:
            minutes = max(1, round(wait / 60))
            response = render(
                request,
                "registration/login.html",
                {"form": self.get_form(), "locked_out": minutes},
                status=429,
            )
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        opts = settings.RPCHAT
        ratelimit.hit("login", self._key(), limit=opts["LOGIN_ATTEMPTS"], window=opts["LOGIN_WINDOW"])
        return super().form_invalid(form)
