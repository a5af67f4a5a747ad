"""Files through the pages: upload size limits that hold before a file is stored (a view installs
the handler ahead of Django's own, and any file past the limit is skipped while it streams in), and
safe names for downloads."""

from __future__ import annotations

import functools
import re

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.views.decorators.csrf import csrf_exempt, csrf_protect


class LimitedUploadHandler(FileUploadHandler):
    """Skips each uploaded file once it passes `limit` bytes and remembers its name.

    Install it before the request body is read, which means before CSRF checks read the POST:
    limit_uploads() below does (csrf_exempt outside, csrf_protect after installing it: the pattern
    Django's upload-handler documentation gives).
    """

    def __init__(self, request=None, *, limit: int):
        super().__init__(request)
        self.limit = limit
        self.too_large: list[str] = []
        self.received = 0

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large.append(self.file_name)
            raise SkipFile
        return raw_data

    def file_complete(self, file_size):
        return None


def limit_uploads(setting: str):
    """Decorate a view that takes files: on a POST, a LimitedUploadHandler with the limit
    settings.RPCHAT[setting] is installed before the CSRF check reads the body, and the view gets it
    as `upload_limit` (None on other methods). CSRF is still checked, after the handler is in place.
    """

    def decorator(view):
        protected = csrf_protect(view)

        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            handler = None
            if request.method == "POST":
                handler = LimitedUploadHandler(request, limit=settings.RPCHAT[setting])
                request.upload_handlers.insert(0, handler)
            return protected(request, *args, upload_limit=handler, **kwargs)

        return csrf_exempt(wrapper)

    return decorator


def body_larger_than(request, limit: int) -> bool:
    """Whether the declared body is past `limit` (plus room for the form around one file)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > limit + 64 * 1024


def download_name(stem: str, suffix: str) -> str:
    """A file name for Content-Disposition: control characters and path separators replaced."""
    cleaned = re.sub(r"[\x00-\x1f\x7f/\\]+", "-", stem).strip(" .-")[:150]
    return f"{cleaned or 'download'}{suffix}"
