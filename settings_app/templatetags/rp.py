import re

from django import template
from django.utils.safestring import mark_safe

from core.markdown import render
from core.metrics import per_request
from settings_app.models import SiteSettings

register = template.Library()


@register.filter
def markdown(text: str) -> str:
    """Render untrusted Markdown to sanitized HTML."""
    # Once per request, not once per message: a chat page renders fifty.
    allow_images = per_request("allow_external_media", lambda: SiteSettings.load().allow_external_media)
    return mark_safe(render(text, allow_images=allow_images))  # noqa: S308


# Emphasis markers anywhere; headings and quotes only where they start a line; links keep their words.
# Linear time: no part can run past a newline (headings) or into the next `[` (links), so no start
# rescans what an earlier one scanned. `^\s*` and `[^\]]*` did, quadratic on a card of newlines or `[`.
_MARKUP = re.compile(r"[*_`~]+|^[^\S\n]*[#>]+[^\S\n]?|\[([^\[\]]*)\]\([^)\[]*\)", re.MULTILINE)


@register.filter
def summary(text: str) -> str:
    """Card text as a plain one-line summary: Markdown markers dropped, links to their words."""
    return " ".join(_MARKUP.sub(lambda m: m.group(1) or "", text or "").split())
