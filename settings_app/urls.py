from django.urls import path

from . import views

app_name = "settings_app"

urlpatterns = [
    path("api-tokens/", views.api_tokens, name="api_tokens"),
    path("api-tokens/<int:pk>/revoke/", views.api_token_delete, name="api_token_revoke"),
]
