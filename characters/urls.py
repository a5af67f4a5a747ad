from django.urls import path

from . import views

app_name = "characters"

urlpatterns = [
    path("", views.gallery, name="gallery"),
    path("<uuid:code>/", views.detail, name="detail"),
    path("<uuid:code>/avatar/", views.avatar, name="avatar"),
    path("<uuid:code>/thumbnail/", views.thumbnail, name="thumbnail"),
    path("<uuid:code>/delete/", views.character_delete, name="delete"),
    path("<uuid:code>/restore/", views.character_restore, name="restore"),
    path("<uuid:code>/card.png", views.card_download, {"fmt": "png"}, name="card_png"),
    path("<uuid:code>/card.json", views.card_download, {"fmt": "json"}, name="card_json"),
    path("import/", views.card_import, name="import"),
    path("lorebooks/", views.lorebook_list, name="lorebooks"),
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
