"""The JSON API under /api/ (django-ninja): the operations of characters/api.py and chats/api.py,
and the OpenAPI document generated from them at /api/openapi.json. See docs/api.md."""

from django.urls import path

from characters.api import router as characters_router
from chats.api import router as chats_router

from .api import make_api, openapi_view, operation_urls

api = make_api(urls_namespace="api")
api.add_router("", characters_router)
api.add_router("", chats_router)

app_name = "api"

urlpatterns = [
    path("openapi.json", openapi_view(api), name="openapi"),
    *operation_urls(api),
]
