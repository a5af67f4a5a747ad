"""Which connection profile a reply uses: the chat's, else the user's default for the speaking
character, else the user's own default, else the site's active profile, else the built-in model.

Each step counts only when the profile is available to the chat's user
(`ConnectionProfile.objects.available_to`) and usable (a user's own profile still on the hosts
staff allow): a profile staff stopped offering falls through to the next step rather than being
used. One query answers it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from django.core.cache import cache
from django.db import models

from settings_app.models import ConnectionProfile, ModelDefault, SiteSettings

from .models import CharacterModelDefault

# Where the profile came from, as the inspector and the chat settings say it.
SOURCES = {
    0: "this chat's choice",
    1: "your default for this character",
    2: "your default",
    3: "the site's default",
}


@dataclass(frozen=True)
class Resolved:
    profile: ConnectionProfile | None  # None: the built-in model
    source: str


def resolve_profile(
    *, user, character, chat_profile_id: int | None, site: SiteSettings | None = None
) -> Resolved:
    """The profile for `user`'s reply by `character`, in the order the module names."""
    site = site or SiteSettings.load()
    ranked = []
    for profile in candidates_queryset(
        user=user, character=character, chat_profile_id=chat_profile_id, site=site
    ):
        for rank, pk in enumerate(
            (chat_profile_id, profile.character_default_id, profile.user_default_id, site.active_profile_id)
        ):
            if pk == profile.pk:
                ranked.append((rank, profile))
                break
    for rank, profile in sorted(ranked, key=lambda pair: pair[0]):
        if site.profile_usable(profile):
            return Resolved(profile, SOURCES[rank])
    return Resolved(None, "the built-in model")


# The chat page names the model the next reply will come from. That name is cached, since resolving
# it is the page's most expensive query to build; the reply itself always resolves afresh.
LABEL_CACHE_SECONDS = 300
GENERATION_KEY = "model-choice-generation"


def choices_changed(**kwargs) -> None:
    """A profile, a default, who may use a profile or a user's groups changed: every cached label
    is dropped (a new generation in their keys). Connected in chats.apps."""
    cache.set(GENERATION_KEY, uuid4().hex, None)


def resolved_label(*, user, character, chat_profile_id: int | None, builtin: str) -> str:
    """The label of resolve_profile()'s answer (`builtin` for the built-in model), cached until any
    model choice changes (choices_changed), the site settings change, or LABEL_CACHE_SECONDS pass."""
    site = SiteSettings.load()
    generation = cache.get(GENERATION_KEY)
    if generation is None:
        cache.add(GENERATION_KEY, uuid4().hex, None)
        generation = cache.get(GENERATION_KEY)
    key = f"model-label:{generation}:{site.updated_at.timestamp()}:{user.pk}:{character.pk}:{chat_profile_id}"
    label = cache.get(key)
    if label is None:
        resolved = resolve_profile(user=user, character=character, chat_profile_id=chat_profile_id, site=site)
        label = resolved.profile.label if resolved.profile else builtin
        cache.set(key, label, LABEL_CACHE_SECONDS)
    return label


def candidates_queryset(*, user, character, chat_profile_id: int | None, site: SiteSettings):
    """The profiles the chat, the user's defaults and the site name that `user` may use (at most
    four), each annotated with which default it is."""
    character_default = CharacterModelDefault.objects.filter(user_id=user.pk, character_id=character.pk)
    user_default = ModelDefault.objects.filter(user_id=user.pk)
    # At most four rows, found by key (one IN over a UNION ALL, which the databases read through
    # the primary key), so the availability checks run on those alone.
    named = (
        ConnectionProfile.objects.filter(
            pk__in=[pk for pk in (chat_profile_id, site.active_profile_id) if pk]
        )
        .order_by()
        .values("pk")
        .union(character_default.values("profile_id"), user_default.values("profile_id"), all=True)
    )
    return (
        ConnectionProfile.objects.filter(pk__in=named)
        .available_to(user, site)
        .select_related("instruct_template")
        # Which default each is, for the ranking below (each a subquery of one row by key).
        .annotate(
            character_default_id=models.Subquery(character_default.values("profile_id")[:1]),
            user_default_id=models.Subquery(user_default.values("profile_id")[:1]),
        )
    )


def character_default(*, user, character) -> CharacterModelDefault | None:
    return (
        CharacterModelDefault.objects.filter(user=user, character=character).select_related("profile").first()
    )


def character_default_set(*, user, character, profile: ConnectionProfile | None) -> None:
    """Make `profile` the user's default for `character`, or clear it (None). The caller checked
    that the profile is available to the user."""
    if profile is None:
        CharacterModelDefault.objects.filter(user=user, character=character).delete()
    else:
        CharacterModelDefault.objects.update_or_create(
            user=user, character=character, defaults={"profile": profile}
        )
