"""WSGI entry point, for tools that need one. Serve rpchat with uvicorn: WSGI buffers streams."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpchat.settings")

application = get_wsgi_application()
