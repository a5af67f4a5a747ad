from django.urls import path

from .views import actions, background, memory, pages, stream, transfer, trash

app_name = "chats"

urlpatterns = [
    path("", pages.chat_list, name="list"),
    path("trash/", trash.trash, name="trash"),
    path("new/<uuid:character_code>/", pages.chat_new, name="new"),
    path("<uuid:code>/", pages.chat_detail, name="detail"),
    path("<uuid:code>/older/", pages.chat_older, name="older"),
    path("import/<uuid:character_code>/", transfer.chat_import, name="import"),
    path("<uuid:code>/export.jsonl", transfer.chat_export, {"fmt": "jsonl"}, name="export_jsonl"),
    path("<uuid:code>/export.txt", transfer.chat_export, {"fmt": "text"}, name="export_text"),
    path("<uuid:code>/newer/", pages.chat_newer, name="newer"),
    path("<uuid:code>/send/", actions.message_send, name="send"),
    path("<uuid:code>/reply/", actions.chat_reply, name="reply"),
    path("<uuid:code>/impersonate/", actions.chat_impersonate, name="impersonate"),
    path("<uuid:code>/settings/", pages.chat_settings, name="settings"),
    path("<uuid:code>/members/", pages.chat_members, name="members"),
    path("<uuid:code>/background/", background.chat_background, name="background"),
    path("<uuid:code>/background.webp", background.chat_background_image, name="background_image"),
    path("<uuid:code>/archive/", pages.chat_archive, name="archive"),
    path("<uuid:code>/delete/", pages.chat_delete, name="delete"),
    path("<uuid:code>/restore/", trash.chat_restore, name="restore"),
    path("<uuid:code>/messages/<int:seq>/stream/", stream.message_stream, name="message_stream"),
    path("<uuid:code>/messages/<int:seq>/stop/", actions.message_stop, name="message_stop"),
    path("<uuid:code>/messages/<int:seq>/retry/", actions.message_retry, name="message_retry"),
    path("<uuid:code>/messages/<int:seq>/swipe/", actions.message_swipe, name="message_swipe"),
    path("<uuid:code>/messages/<int:seq>/regenerate/", actions.message_regenerate, name="message_regenerate"),
    path("<uuid:code>/messages/<int:seq>/continue/", actions.message_continue, name="message_continue"),
    path("<uuid:code>/messages/<int:seq>/edit/", actions.message_edit, name="message_edit"),
    path("<uuid:code>/messages/<int:seq>/hide/", actions.message_hide, name="message_hide"),
    path("<uuid:code>/messages/<int:seq>/delete/", actions.message_delete, name="message_delete"),
    path("<uuid:code>/messages/<int:seq>/branch/", actions.message_branch, name="message_branch"),
    path("<uuid:code>/messages/<int:seq>/source/", actions.message_source, name="message_source"),
    path("<uuid:code>/messages/<int:seq>/prompt/", actions.message_prompt, name="message_prompt"),
    path("<uuid:code>/messages/<int:seq>/pin/", memory.message_pin, name="message_pin"),
    path("<uuid:code>/memory/", memory.memory_page, name="memory"),
    path("<uuid:code>/memory/panel/", memory.memory_panel, name="memory_panel"),
    path("<uuid:code>/memory/facts/", memory.fact_add, name="fact_add"),
    path("<uuid:code>/memory/facts/<int:fact_id>/edit/", memory.fact_edit, name="fact_edit"),
    path("<uuid:code>/memory/facts/<int:fact_id>/delete/", memory.fact_delete, name="fact_delete"),
    path("<uuid:code>/memory/summaries/<int:memory_id>/edit/", memory.summary_edit, name="summary_edit"),
    path(
        "<uuid:code>/memory/summaries/<int:memory_id>/delete/", memory.summary_delete, name="summary_delete"
    ),
]
