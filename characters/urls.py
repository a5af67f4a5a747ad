from django.urls import path

from . import editor, lorebook_views, views

app_name = "characters"

urlpatterns = [
    path("", views.gallery, name="gallery"),
    path("<uuid:code>/", views.detail, name="detail"),
    path("new/", editor.character_new, name="new"),
    path("tokens/", editor.token_counts, name="token_counts"),
    path("<uuid:code>/edit/", editor.character_edit, name="edit"),
    path("<uuid:code>/duplicate/", editor.character_duplicate, name="duplicate"),
    path("<uuid:code>/history/", editor.character_history, name="history"),
    path("<uuid:code>/history/<int:number>/", editor.character_revision, name="revision"),
    path(
        "<uuid:code>/history/<int:number>/restore/",
        editor.character_revision_restore,
        name="revision_restore",
    ),
    path("<uuid:code>/avatar/", views.avatar, name="avatar"),
    path("<uuid:code>/thumbnail/", views.thumbnail, name="thumbnail"),
    path("<uuid:code>/delete/", views.character_delete, name="delete"),
    path("<uuid:code>/restore/", views.character_restore, name="restore"),
    path("<uuid:code>/card.png", views.card_download, {"fmt": "png"}, name="card_png"),
    path("<uuid:code>/card.json", views.card_download, {"fmt": "json"}, name="card_json"),
    path("import/", views.card_import, name="import"),
    path("<uuid:code>/world-info/", lorebook_views.character_world_info, name="world_info"),
    path("<uuid:code>/lorebook/new/", lorebook_views.character_lorebook_new, name="lorebook_new_for"),
    path("lorebooks/", views.lorebook_list, name="lorebooks"),
    path("lorebooks/new/", lorebook_views.lorebook_new, name="lorebook_new"),
    path("lorebooks/<uuid:code>/", lorebook_views.lorebook_edit, name="lorebook_edit"),
    path("lorebooks/<uuid:code>/copy/", lorebook_views.lorebook_duplicate, name="lorebook_duplicate"),
    path("lorebooks/<uuid:code>/delete/", lorebook_views.lorebook_delete, name="lorebook_delete"),
    path("lorebooks/<uuid:code>/personas/", lorebook_views.lorebook_personas, name="lorebook_personas"),
    path("lorebooks/<uuid:code>/entries/", lorebook_views.lorebook_entry_save, name="lorebook_entry_new"),
    path(
        "lorebooks/<uuid:code>/entries/<int:entry_id>/",
        lorebook_views.lorebook_entry_save,
        name="lorebook_entry_save",
    ),
    path(
        "lorebooks/<uuid:code>/entries/<int:entry_id>/delete/",
        lorebook_views.lorebook_entry_delete,
        name="lorebook_entry_delete",
    ),
    path("lorebooks/<uuid:code>/history/", editor.lorebook_history, name="lorebook_history"),
    path("lorebooks/<uuid:code>/history/<int:number>/", editor.lorebook_revision, name="lorebook_revision"),
    path(
        "lorebooks/<uuid:code>/history/<int:number>/restore/",
        editor.lorebook_revision_restore,
        name="lorebook_revision_restore",
    ),
    path(
        "lorebooks/<uuid:code>/world-info.json",
        views.lorebook_download,
        {"fmt": "world_info"},
        name="lorebook_world_info",
    ),
    path(
        "lorebooks/<uuid:code>/lorebook-v3.json",
        views.lorebook_download,
        {"fmt": "lorebook_v3"},
        name="lorebook_v3",
    ),
]
