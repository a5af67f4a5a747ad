"""WSGI entry point, for tools that need one. Serve rpchat with uvicorn: WSGI buffers streams."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpchat.settings")

application = get_wsgi_application()

# As in asgi.py: replies left half-written by a worker that is gone become retryable.
from chats.generation import start_maintenance  # noqa: E402 - needs the apps loaded above

start_maintenance()
