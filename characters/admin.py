from django.conf import settings
from django.contrib import admin

from rpchat.admin_utils import EstimatedCountPaginator

from .models import Character, Lorebook, LorebookEntry, Tag


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ("name",)


@admin.register(Character)
class CharacterAdmin(admin.ModelAdmin):
    list_display = ("name", "label", "owner", "visibility", "is_active", "updated_at")
    list_filter = ("is_active", "visibility")
    list_select_related = ("owner",)
    search_fields = ("name", "nickname", "creator")
    raw_id_fields = ("owner",)
    autocomplete_fields = ("tags",)
    readonly_fields = ("code", "source_hash", "created_at", "updated_at")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    # Newest first, along the primary key: ordering by name would sort the whole table on every
    # page (no index serves it without the gallery's is_active filter). Search finds by name.
    ordering = ("-id",)

    def get_queryset(self, request):
        # The list shows a few short columns; long card text stays in the database.
        qs = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            qs = qs.only(
                "id", "code", "name", "label", "owner", "visibility", "is_active", "updated_at",
                "owner__id", "owner__username",
            )
        return qs


class LorebookEntryInline(admin.StackedInline):
    model = LorebookEntry
    extra = 0
    # RPCHAT_MAX_LOREBOOK_ENTRIES: the formset refuses more, with Django's own message.
    max_num = settings.RPCHAT["MAX_LOREBOOK_ENTRIES"]
    validate_max = True
    fields = (
        ("name", "enabled", "constant", "selective", "use_regex", "case_sensitive"),
        ("keys", "secondary_keys"),
        "content",
        ("insertion_order", "priority", "position"),
    )


@admin.register(Lorebook)
class LorebookAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "character", "token_budget", "scan_depth")
    list_select_related = ("owner", "character")
    raw_id_fields = ("owner", "character")
    search_fields = ("name",)
    inlines = [LorebookEntryInline]
