from django.urls import path

from . import views

app_name = "personas"

urlpatterns = [
    path("", views.persona_list, name="list"),
    path("new/", views.persona_edit, name="new"),
    path("<uuid:code>/", views.persona_edit, name="edit"),
    path("<uuid:code>/delete/", views.persona_delete, name="delete"),
    path("<uuid:code>/picture/", views.persona_picture, name="picture"),
]
