"""ASGI entry point: uvicorn serves this (streaming replies need an async server)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpchat.settings")

application = get_asgi_application()

# Only in the benchmark's own server (manage.py bench): the raw-SQL floor it measures against.
if os.getenv("RPCHAT_BENCH_FLOOR") == "1":
    from rpchat.bench_floor import BenchFloor

    application = BenchFloor(application)
