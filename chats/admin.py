from django.contrib import admin

from core.admin_utils import EstimatedCountPaginator

from .models import PRESET_FIELDS, ChatSession, Message


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "user", "character", "message_count", "last_message_at")
    list_select_related = ("user", "character")
    raw_id_fields = ("user", "character", "persona", "parent", *PRESET_FIELDS)
    search_fields = ("title", "code")
    readonly_fields = ("code", "message_count", "last_seq", "created_at", "last_message_at")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    # Newest first, along the primary key: the model's -last_message_at has no index of its own
    # (chat_user_recent_idx starts with user), so it would sort every chat on every page.
    ordering = ("-id",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .defer(
                "character__description",
                "character__personality",
                "character__scenario",
                "character__first_message",
                "character__example_dialogue",
                "character__extensions",
                "character__card_extra",
            )
        )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    # No content column and no date hierarchy: both would read or group a million rows.
    list_display = ("id", "session", "seq", "role", "status", "token_count", "created_at")
    list_filter = ("status",)
    list_select_related = ("session",)
    raw_id_fields = ("session",)
    readonly_fields = ("created_at", "updated_at")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ("-id",)

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            qs = qs.only(
                "id",
                "session",
                "seq",
                "role",
                "status",
                "token_count",
                "created_at",
                "session__id",
                "session__title",
                "session__code",
            )
        return qs
