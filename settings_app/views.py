"""Accounts (sign-up, login with a lockout, settings), API tokens, personas and SillyTavern presets:
the user's own settings."""

import asyncio

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UsernameField
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import images, ratelimit
from core.http import private_cache
from core.pagination import page_number, page_of
from core.uploads import download_name, limit_uploads

from .auth import api_token_create, api_token_revoke
from .engines import EngineError, config_for_profile, list_models
from .forms import ModelDefaultForm, OwnProfileForm, PersonaForm, SignupForm, ThemeForm
from .models import ApiToken, ConnectionProfile, ModelDefault, Persona, Preset, SiteSettings, preferences_for
from .services import PresetImportResult, persona_save, preferences_save, preset_export, preset_import


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
        login(request, user, backend="settings_app.backends.UserBackend")
        messages.success(request, f"Welcome, {user.username}. Pick a character to chat with.")
        return redirect("characters:gallery")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@require_GET
def account_settings(request):
    theme_form = ThemeForm(instance=preferences_for(request.user))
    return render(request, "registration/settings.html", {"theme_form": theme_form})


@login_required
@require_POST
def preferences(request):
    """Change the theme, or hide the demo-model notice, for this user on every device; then back
    to the page the form was on."""
    if "dismiss_demo_banner" in request.POST:
        preferences_save(user=request.user, demo_banner_dismissed=True)
    else:
        form = ThemeForm(request.POST, instance=preferences_for(request.user))
        if not form.is_valid():
            return render(request, "registration/settings.html", {"theme_form": form}, status=400)
        preferences_save(user=request.user, theme=form.cleaned_data["theme"])
        messages.success(request, "Theme saved.")
    target = request.POST.get("next", "")
    # Only a path of this site; anything else (another host, a bare word, control characters)
    # goes back to Settings. A path, never a URL name: redirect() would try to reverse "999".
    if (
        target.startswith("/")
        and target.isprintable()
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return HttpResponseRedirect(target)
    return redirect("settings")


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


def _get_persona_for_user(request, code) -> Persona:
    return get_object_or_404(Persona, user=request.user, code=code)


@login_required
def persona_list(request):
    personas = Persona.objects.filter(user=request.user).only(
        "code", "name", "description", "is_default", "avatar"
    )
    return render(request, "settings_app/personas.html", {"personas": personas})


@login_required
@require_http_methods(["GET", "POST"])
@limit_uploads("MAX_AVATAR_BYTES")
def persona_edit(request, code=None, *, upload_limit):
    handler = upload_limit
    persona = _get_persona_for_user(request, code) if code else Persona(user=request.user)
    if request.method == "GET":
        form = PersonaForm(instance=persona)
        return render(request, "settings_app/persona_form.html", {"form": form, "persona": persona})
    form = PersonaForm(request.POST, request.FILES, instance=persona)
    if handler.too_large:
        form.add_error(
            "picture", "The picture is larger than the limit (RPCHAT_MAX_AVATAR_BYTES). Nothing was saved."
        )
    picture = None
    if form.is_valid() and form.cleaned_data["picture"]:
        try:
            picture = images.portrait_from_upload(form.cleaned_data["picture"].read())
        except images.ImageRejected as exc:
            form.add_error("picture", f"{exc} Nothing was saved.")
    if form.errors:
        return render(
            request, "settings_app/persona_form.html", {"form": form, "persona": persona}, status=400
        )
    persona_save(
        persona=form.save(commit=False), picture=picture, remove_picture=form.cleaned_data["remove_picture"]
    )
    messages.success(request, f"Persona “{persona.name}” saved.")
    return redirect("personas:list")


@login_required
@require_GET
@private_cache()
def persona_picture(request, code):
    """A persona's picture, for its owner only."""
    persona = _get_persona_for_user(request, code)
    if not persona.avatar:
        raise Http404("This persona has no picture.")
    try:
        return FileResponse(persona.avatar.open("rb"), content_type="image/png")
    except FileNotFoundError:
        raise Http404("The picture's file is missing.") from None


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
    if persona.avatar:
        persona.avatar.storage.delete(persona.avatar.name)
    messages.success(request, f"Persona “{persona.name}” deleted. Chats that used it now use your username.")
    return redirect("personas:list")


@login_required
@require_POST
def api_token_delete(request, pk):
    token = _get_token_for_user(request, pk)
    api_token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” revoked. Apps using it can no longer reach the API.")
    return redirect("settings_app:api_tokens")


# --- SillyTavern presets ---------------------------------------------------------------------------


def _wants_json(request) -> bool:
    return request.headers.get("Accept", "").startswith("application/json")


@login_required
@require_http_methods(["GET", "POST"])
@limit_uploads("MAX_CARD_JSON_BYTES")
def preset_list(request, *, upload_limit):
    """The presets the user may use, and an import of preset files (the page's script sends one file
    a request and shows each one's result; without script the form sends them all)."""
    handler = upload_limit
    limit = settings.RPCHAT["MAX_CARD_JSON_BYTES"]
    results = []
    if request.method == "POST":
        # Reading the files parses the body, which is when the handler sets too-large files aside.
        uploads = request.FILES.getlist("files")
        results = [
            PresetImportResult(name, "failed", f"the file is larger than {limit:,} bytes")
            for name in handler.too_large
        ]
        for upload in uploads:
            results.append(preset_import(source=upload, file_name=upload.name, owner=request.user))
        if not results:
            results.append(PresetImportResult("", "failed", "no file was sent"))
        if _wants_json(request):
            rows = [r.as_json() for r in results]
            return JsonResponse(
                {"results": rows}, status=200 if any(r.status != "failed" for r in results) else 400
            )
    presets = (
        Preset.objects.visible_to(request.user)
        .select_related("owner")
        .only("id", "code", "kind", "name", "updated_at", "owner__username", "owner_id")
        .order_by("kind", "name", "id")
    )
    page = page_of(presets, number=page_number(request), per_page=settings.RPCHAT["GALLERY_PAGE_SIZE"])
    labels = dict(Preset.Kind.choices)
    for preset in page.rows:
        preset.kind_label = labels[preset.kind]
    return render(
        request,
        "settings_app/presets.html",
        {"page": page, "results": [r.as_json() for r in results], "max_bytes": limit},
    )


@login_required
@require_GET
def preset_download(request, code):
    """A preset as the SillyTavern file it came from."""
    preset = get_object_or_404(Preset.objects.visible_to(request.user), code=code)
    response = HttpResponse(preset_export(preset=preset), content_type="application/json")
    response["Content-Disposition"] = content_disposition_header(True, download_name(preset.name, ".json"))
    response["Cache-Control"] = "private, no-cache"
    return response


# --- models: the profiles a user may use, their default, their own servers -----------------------


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def model_settings(request):
    """The models a user may use, their default one, and their own profiles (when staff allow)."""
    site = SiteSettings.load()
    current = ModelDefault.objects.filter(user=request.user).select_related("profile").first()
    form = ModelDefaultForm(
        request.POST or None,
        user=request.user,
        initial={"profile": current.profile.code if current else None},
    )
    if request.method == "POST" and form.is_valid():
        profile = form.cleaned_data["profile"]
        if profile is None:
            ModelDefault.objects.filter(user=request.user).delete()
        else:
            ModelDefault.objects.update_or_create(user=request.user, defaults={"profile": profile})
        messages.success(request, "Your default model is saved.")
        return redirect("settings_app:models")
    available = (
        ConnectionProfile.objects.available_to(request.user, site)
        .for_choice()
        .only("id", "code", "name", "model", "owner_id", "base_url")
    )
    return render(
        request,
        "settings_app/models.html",
        {"form": form, "available": available},
        status=400 if form.errors else 200,
    )


def _get_own_profile(request, code) -> ConnectionProfile:
    """The user's own profile, or 404 (staff profiles and other users' are not theirs to edit)."""
    return get_object_or_404(ConnectionProfile, owner=request.user, code=code)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def own_profile_edit(request, code=None):
    site = SiteSettings.load()
    if not site.allow_user_profiles:
        raise Http404("This instance does not let users add their own model servers.")
    profile = _get_own_profile(request, code) if code else ConnectionProfile(owner=request.user)
    form = OwnProfileForm(request.POST or None, instance=profile, owner=request.user, site=site)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Profile “{profile.name}” saved.")
        return redirect("settings_app:models")
    return render(
        request,
        "settings_app/own_profile_form.html",
        {"form": form, "profile": profile},
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def preset_delete(request, code):
    preset = get_object_or_404(Preset, owner=request.user, code=code)
    preset.delete()
    messages.success(request, f"Deleted the preset “{preset.name}”. Chats that used it use the default now.")
    return redirect("presets:list")


@login_required
@require_POST
def own_profile_test(request, code):
    """Ask the user's own server for its models, through the same guard as its replies."""
    profile = _get_own_profile(request, code)
    site = SiteSettings.load()
    if wait := ratelimit.hit(
        "profile-test", str(request.user.pk), limit=settings.RPCHAT["GENERATIONS_PER_MINUTE"], window=60
    ):
        messages.error(request, f"Too many tests in a minute. Try again in {wait} seconds.")
    elif not site.profile_usable(profile):
        messages.error(request, f"“{profile.name}” is on a host this instance does not allow (any more).")
    else:
        try:
            found = asyncio.run(list_models(config_for_profile(profile, site)))
        except EngineError as exc:
            messages.error(request, f"{profile.name}: {exc}")
        else:
            names = ", ".join(found[:10]) or "no models listed"
            messages.success(request, f"{profile.name}: connected. Models: {names}")
    return redirect("settings_app:models")


@login_required
@require_POST
def own_profile_delete(request, code):
    profile = _get_own_profile(request, code)
    profile.delete()
    messages.success(request, f"Profile “{profile.name}” deleted. Chats that used it use your defaults now.")
    return redirect("settings_app:models")
