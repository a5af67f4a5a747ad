from django.urls import path

from . import views

app_name = "chats"

urlpatterns = [
    path("", views.chat_list, name="list"),
    path("new/<uuid:character_code>/", views.chat_new, name="new"),
    path("<uuid:code>/", views.chat_detail, name="detail"),
    path("<uuid:code>/older/", views.chat_older, name="older"),
    path("import/<uuid:character_code>/", views.chat_import, name="import"),
    path("<uuid:code>/export.jsonl", views.chat_export, {"fmt": "jsonl"}, name="export_jsonl"),
    path("<uuid:code>/export.txt", views.chat_export, {"fmt": "text"}, name="export_text"),
    path("<uuid:code>/send/", views.message_send, name="send"),
    path("<uuid:code>/messages/<int:seq>/stream/", views.message_stream, name="message_stream"),
    path("<uuid:code>/messages/<int:seq>/stop/", views.message_stop, name="message_stop"),
    path("<uuid:code>/messages/<int:seq>/retry/", views.message_retry, name="message_retry"),
    path("<uuid:code>/messages/<int:seq>/swipe/", views.message_swipe, name="message_swipe"),
]
