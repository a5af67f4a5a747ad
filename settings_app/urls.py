from django.urls import path

from . import views

app_name = "settings_app"

urlpatterns = [
    path("api-tokens/", views.api_tokens, name="api_tokens"),
    path("api-tokens/<int:pk>/revoke/", views.api_token_delete, name="api_token_revoke"),
    path("models/", views.model_settings, name="models"),
    path("models/new/", views.own_profile_edit, name="own_profile_new"),
    path("models/<uuid:code>/", views.own_profile_edit, name="own_profile_edit"),
    path("models/<uuid:code>/test/", views.own_profile_test, name="own_profile_test"),
    path("models/<uuid:code>/delete/", views.own_profile_delete, name="own_profile_delete"),
]
