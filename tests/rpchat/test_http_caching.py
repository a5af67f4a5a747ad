"""Static files in production: hashed names served with a far-future, immutable Cache-Control."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from io import StringIO

from django.core.management import call_command
from django.http import HttpResponse
from django.test import RequestFactory, override_settings


def test_hashed_static_files_are_cached_for_good_and_plain_names_for_a_year(tmp_path, settings):
    assert settings.SERVESTATIC_MAX_AGE == 31536000  # when DEBUG is off, as in production
    with override_settings(
        DEBUG=False,
        STATIC_ROOT=tmp_path,
        SERVESTATIC_USE_FINDERS=False,
        SERVESTATIC_AUTOREFRESH=False,
        STORAGES={
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
        },
    ):
        from django.contrib.staticfiles.storage import staticfiles_storage
        from servestatic.middleware import ServeStaticMiddleware

        call_command("collectstatic", "--no-input", verbosity=0, stdout=StringIO())
        hashed_url = staticfiles_storage.url("js/chat.js")
        assert re.search(r"/static/js/chat\.[0-9a-f]{12}\.js$", hashed_url)

        async def not_found(request):
            return HttpResponse(status=404)

        middleware = ServeStaticMiddleware(not_found)

        def serve(request):
            # A loop of its own, in a thread: browser tests may leave one running in this thread.
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, middleware(request)).result()

        hashed = serve(RequestFactory().get(hashed_url))
        assert hashed.status_code == 200
        # servestatic gives names with a content hash ten years and `immutable`.
        assert hashed["Cache-Control"] == "max-age=315360000, public, immutable"

        plain = serve(RequestFactory().get("/static/js/chat.js"))
        assert plain.status_code == 200
        assert plain["Cache-Control"] == "max-age=31536000, public"
