from django.urls import path

from . import views

app_name = "presets"

urlpatterns = [
    path("", views.preset_list, name="list"),
    path("<uuid:code>.json", views.preset_download, name="download"),
    path("<uuid:code>/delete/", views.preset_delete, name="delete"),
]
