from django.urls import path

from . import views

app_name = "chats"

urlpatterns = [
    path("", views.chat_list, name="list"),
    path("trash/", views.trash, name="trash"),
    path("new/<uuid:character_code>/", views.chat_new, name="new"),
    path("<uuid:code>/", views.chat_detail, name="detail"),
    path("<uuid:code>/older/", views.chat_older, name="older"),
    path("import/<uuid:character_code>/", views.chat_import, name="import"),
    path("<uuid:code>/export.jsonl", views.chat_export, {"fmt": "jsonl"}, name="export_jsonl"),
    path("<uuid:code>/export.txt", views.chat_export, {"fmt": "text"}, name="export_text"),
    path("<uuid:code>/newer/", views.chat_newer, name="newer"),
    path("<uuid:code>/send/", views.message_send, name="send"),
    path("<uuid:code>/reply/", views.chat_reply, name="reply"),
    path("<uuid:code>/impersonate/", views.chat_impersonate, name="impersonate"),
    path("<uuid:code>/settings/", views.chat_settings, name="settings"),
    path("<uuid:code>/members/", views.chat_members, name="members"),
    path("<uuid:code>/archive/", views.chat_archive, name="archive"),
    path("<uuid:code>/delete/", views.chat_delete, name="delete"),
    path("<uuid:code>/restore/", views.chat_restore, name="restore"),
    path("<uuid:code>/messages/<int:seq>/stream/", views.message_stream, name="message_stream"),
    path("<uuid:code>/messages/<int:seq>/stop/", views.message_stop, name="message_stop"),
    path("<uuid:code>/messages/<int:seq>/retry/", views.message_retry, name="message_retry"),
    path("<uuid:code>/messages/<int:seq>/swipe/", views.message_swipe, name="message_swipe"),
    path("<uuid:code>/messages/<int:seq>/regenerate/", views.message_regenerate, name="message_regenerate"),
    path("<uuid:code>/messages/<int:seq>/continue/", views.message_continue, name="message_continue"),
    path("<uuid:code>/messages/<int:seq>/edit/", views.message_edit, name="message_edit"),
    path("<uuid:code>/messages/<int:seq>/hide/", views.message_hide, name="message_hide"),
    path("<uuid:code>/messages/<int:seq>/delete/", views.message_delete, name="message_delete"),
    path("<uuid:code>/messages/<int:seq>/branch/", views.message_branch, name="message_branch"),
    path("<uuid:code>/messages/<int:seq>/source/", views.message_source, name="message_source"),
    path("<uuid:code>/messages/<int:seq>/prompt/", views.message_prompt, name="message_prompt"),
]
