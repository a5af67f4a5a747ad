"""The login backend: Django's ModelBackend, loading the session's user with their preferences
joined, so every page knows the user's theme without a query of its own."""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

# Sessions made before this backend existed name Django's own; it stays listed (second) so they
# stay logged in, and it is never reached by a login (see authenticate below).
LEGACY_BACKEND = "django.contrib.auth.backends.ModelBackend"


class UserBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None and password is not None:
            # Wrong credentials: stop here rather than let the legacy entry check them again.
            raise PermissionDenied
        return user

    def get_user(self, user_id):
        model = get_user_model()
        try:
            user = model._default_manager.select_related("preferences").get(pk=user_id)
        except model.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
