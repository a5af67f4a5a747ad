"""ASGI entry point of the benchmark's own server: rpchat with the raw-SQL floor in front of it.

Never a real instance's: the floor answers without a login (for the bench user's chats only).
"""

from rpchat.asgi import application as django_application
from tools.bench_floor import BenchFloor

application = BenchFloor(django_application)
