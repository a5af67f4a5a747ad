"""The login backend: Django's ModelBackend, loading the session's user with their preferences
joined, so every page knows the user's theme without a query of its own, and keeping that user in
the cache between requests, so most pages load no user at all."""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction

# Sessions made before this backend existed name Django's own; it stays listed (second) so they
# stay logged in, and it is never reached by a login (see authenticate below).
LEGACY_BACKEND = "django.contrib.auth.backends.ModelBackend"

# How long the session's user is reused without reading it again. Saving or deleting the user or
# their preferences through the ORM drops it at once (in every process that shares the cache: the
# signals in settings_app.apps); this bounds what bypasses that: an UPDATE or raw SQL, or a
# `manage.py` command run beside a server that has a local-memory cache of its own.
USER_CACHE_SECONDS = 60


def user_cache_key(user_id) -> str:
    return f"session-user:{user_id}"


def forget_user(user_id) -> None:
    """Drop the cached session user (on any change to the user or their preferences): now, and
    again when the transaction commits, so that a request reading the old row in between does not
    leave it cached."""
    key = user_cache_key(user_id)
    cache.delete(key)
    transaction.on_commit(lambda: cache.delete(key))


def user_changed(sender, instance, **kwargs):
    forget_user(instance.pk)


def preferences_changed(sender, instance, **kwargs):
    forget_user(instance.user_id)


class UserBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        # Logging in always reads the user from the database, never from the cache.
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None and password is not None:
            # Wrong credentials: stop here rather than let the legacy entry check them again.
            raise PermissionDenied
        return user

    def get_user(self, user_id):
        key = user_cache_key(user_id)
        user = cache.get(key)
        if user is None:
            model = get_user_model()
            try:
                user = model._default_manager.select_related("preferences").get(pk=user_id)
            except model.DoesNotExist:
                return None
            # Stored as loaded, before a request caches anything on it (permissions, say).
            cache.set(key, user, USER_CACHE_SECONDS)
        return user if self.user_can_authenticate(user) else None

    async def aget_user(self, user_id):
        # The async views' way in (reply streams): the same cache, the same row.
        key = user_cache_key(user_id)
        user = await cache.aget(key)
        if user is None:
            model = get_user_model()
            try:
                user = await model._default_manager.select_related("preferences").aget(pk=user_id)
            except model.DoesNotExist:
                return None
            await cache.aset(key, user, USER_CACHE_SECONDS)
        return user if self.user_can_authenticate(user) else None
