"""ASGI entry point: uvicorn serves this (streaming replies need an async server)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpchat.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does

# Django's handler, with each request on one of a few long-lived threads that keep their database
# connection (rpchat/handlers.py).
from rpchat.handlers import PooledThreadsASGIHandler  # noqa: E402 - needs the apps loaded above

application = PooledThreadsASGIHandler()

# Replies left half-written by a worker that is gone (killed, restarted) become retryable: swept
# now and periodically, in the background (chats.generation).
from chats.generation import start_maintenance  # noqa: E402 - needs the apps loaded above

start_maintenance()
