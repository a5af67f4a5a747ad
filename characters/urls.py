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
]
