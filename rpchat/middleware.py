"""Project-wide middleware: the Content-Security-Policy header."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from settings_app.models import SiteSettings

BASE_POLICY = {
    "default-src": "'self'",
    # No inline script anywhere: every page's script is a static file.
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(*, external_media: bool, admin: bool) -> str:
    policy = dict(BASE_POLICY)
    if external_media:
        policy["img-src"] = "'self' data: https:"
    if admin:
        # Django's admin sets a few style attributes; its scripts are still files only.
        policy["style-src"] = "'self' 'unsafe-inline'"
    return "; ".join(f"{k} {v}" for k, v in policy.items())


class ContentSecurityPolicyMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _header(self, request) -> str:
        return content_security_policy(
            external_media=SiteSettings.for_request(request).allow_external_media,
            admin=request.path.startswith("/admin/"),
        )

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", self._header(request))
        return response

    async def __acall__(self, request):
        from asgiref.sync import sync_to_async

        response = await self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = await sync_to_async(self._header)(request)
        return response
