from django.urls import path

from . import views

app_name = "chats"

urlpatterns = [
    path("", views.chat_list, name="list"),
    path("new/<uuid:character_code>/", views.chat_new, name="new"),
    path("<uuid:code>/", views.chat_detail, name="detail"),
    path("<uuid:code>/older/", views.chat_older, name="older"),
    path("<uuid:code>/newer/", views.chat_newer, name="newer"),
    path("<uuid:code>/send/", views.message_send, name="send"),
    path("<uuid:code>/messages/<int:seq>/stream/", views.message_stream, name="message_stream"),
    path("<uuid:code>/messages/<int:seq>/stop/", views.message_stop, name="message_stop"),
    path("<uuid:code>/messages/<int:seq>/retry/", views.message_retry, name="message_retry"),
    path("<uuid:code>/messages/<int:seq>/swipe/", views.message_swipe, name="message_swipe"),
]
