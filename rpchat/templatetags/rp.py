from django import template
from django.utils.safestring import mark_safe

from rpchat.markdown import render
from settings_app.models import SiteSettings

register = template.Library()


@register.filter
def markdown(text: str) -> str:
    """Render untrusted Markdown to sanitized HTML."""
    return mark_safe(render(text, allow_images=SiteSettings.load().allow_external_media))  # noqa: S308
