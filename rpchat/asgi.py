"""ASGI entry point: uvicorn serves this (streaming replies need an async server)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpchat.settings")

application = get_asgi_application()

# Replies left half-written by a worker that is gone (killed, restarted) become retryable: swept
# now and periodically, in the background (chats.generation).
from chats.generation import start_maintenance  # noqa: E402 - needs the apps loaded above

start_maintenance()
