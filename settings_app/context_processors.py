from django.utils.functional import SimpleLazyObject

from .models import SiteSettings, preferences_for


def site(request) -> dict:
    """The settings singleton (from the cache) and the user's preferences, for every template."""
    return {
        "site_settings": SiteSettings.for_request(request),
        "prefs": SimpleLazyObject(lambda: preferences_for(request.user)),
    }
