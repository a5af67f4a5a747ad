"""ASGI entry point: uvicorn serves this (streaming replies need an async server)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpchat.settings")

application = get_asgi_application()
