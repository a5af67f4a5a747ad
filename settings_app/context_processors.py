from .models import SiteSettings


def site(request) -> dict:
    """The settings singleton (from the cache) for every template."""
    return {"site_settings": SiteSettings.for_request(request)}
