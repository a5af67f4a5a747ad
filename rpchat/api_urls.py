"""The JSON API under /api/, documented in docs/api.md and docs/openapi.json (kept in sync by
tests/rpchat/test_openapi.py)."""

from django.urls import path

from characters import api as characters_api
from chats import api as chats_api

from . import views

app_name = "api"

urlpatterns = [
    path("openapi.json", views.openapi_schema, name="openapi"),
    path("characters/", characters_api.character_list, name="characters"),
    path("characters/<uuid:code>/", characters_api.character_detail, name="character"),
    path("chats/", chats_api.chat_list, name="chats"),
    path("chats/<uuid:code>/", chats_api.chat_detail, name="chat"),
    path("chats/<uuid:code>/messages/", chats_api.message_list, name="messages"),
    path("search/messages/", chats_api.message_search, name="search_messages"),
    path("search/characters/", characters_api.character_search, name="search_characters"),
]
