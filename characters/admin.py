import io
import zipfile

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_protect

from core.admin_utils import EstimatedCountPaginator
from core.uploads import LimitedUploadHandler

from . import revisions, services
from .models import LONG_FIELDS, Character, Lorebook, LorebookEntry, Revision, Tag


class ImportPageMixin:
    """An "Import" page linked from the changelist: files, an owner, one result row per file."""

    import_title = "Import"
    import_help = ""
    import_accept = ""
    import_public_choice = False

    def get_urls(self):
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}_import"
        return [path("import/", self.admin_site.admin_view(self.import_view), name=name), *super().get_urls()]

    def import_file(self, *, upload, owner, public: bool) -> services.ImportResult:
        raise NotImplementedError

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        handler = None
        if request.method == "POST":
            handler = LimitedUploadHandler(request, limit=settings.RPCHAT["MAX_CARD_BYTES"])
            request.upload_handlers.insert(0, handler)
        return csrf_protect(self._import_page)(request, handler)

    # The body must not be read (by the CSRF check) before the size-limiting handler is in place.
    import_view.csrf_exempt = True

    def _import_page(self, request, handler):
        results = []
        owner_name = ""
        if request.method == "POST":
            owner_name = request.POST.get("owner", "").strip()
            owner = None
            if owner_name:
                User = get_user_model()
                owner = User.objects.filter(**{User.USERNAME_FIELD: owner_name}).first()
                if owner is None:
                    messages.error(request, f"There is no user named {owner_name!r}.")
            if owner is not None or not owner_name:
                for name in handler.too_large:
                    limit = services.human_size(handler.limit)
                    results.append(
                        services.ImportResult(name, "failed", f"larger than {limit} (RPCHAT_MAX_CARD_BYTES)")
                    )
                for upload in request.FILES.getlist("files"):
                    results.append(
                        self.import_file(upload=upload, owner=owner, public=request.POST.get("public") == "1")
                    )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": self.import_title,
            "help": self.import_help,
            "accept": self.import_accept,
            "public_choice": self.import_public_choice,
            "results": results,
            "owner_name": owner_name,
            "max_bytes": settings.RPCHAT["MAX_CARD_BYTES"],
        }
        return TemplateResponse(request, "admin/characters/import.html", context)


class RecordsRevisions:
    """Admin saves are recorded as revisions too (the History page and restores stay whole)."""

    def save_model(self, request, obj, form, change):
        if change:
            request._revision_before = revisions.snapshot(obj)  # the saved values, before this save
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        before = getattr(request, "_revision_before", None)
        if before is not None:
            revisions.record(form.instance, before=before, author=request.user)


class KeysField(forms.CharField):
    """A list of keys edited one per line (keys may hold commas: regexes, phrases)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", False)
        kwargs.setdefault("help_text", "One key per line.")
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class LorebookEntryForm(forms.ModelForm):
    keys = KeysField(label="Keys")
    secondary_keys = KeysField(label="Secondary keys")

    class Meta:
        model = LorebookEntry
        fields = (
            "uid", "name", "comment", "keys", "secondary_keys", "content", "enabled", "constant",
            "selective", "selective_logic", "case_sensitive", "use_regex", "insertion_order", "priority",
            "position", "extensions", "entry_extra",
        )  # fmt: skip


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ("name",)


@admin.register(Character)
class CharacterAdmin(RecordsRevisions, ImportPageMixin, admin.ModelAdmin):
    change_list_template = "admin/characters/change_list_with_import.html"
    import_title = "Import character cards"
    import_help = (
        "PNG, APNG, JSON (V1, V2, V3) and CHARX cards. With an owner the characters are private to "
        "them; without one they belong to the instance and everyone sees them. Files imported "
        "before by the same owner are skipped."
    )
    import_accept = ".png,.apng,.json,.charx"
    import_public_choice = True
    list_display = ("name", "label", "owner", "visibility", "is_active", "updated_at")
    list_filter = ("is_active", "visibility")
    list_select_related = ("owner",)
    search_fields = ("name", "nickname", "creator")
    autocomplete_fields = ("owner", "tags")
    readonly_fields = ("code", "revision", "source_hash", "created_at", "updated_at")
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
                "id",
                "code",
                "name",
                "label",
                "owner",
                "visibility",
                "is_active",
                "updated_at",
                "owner__id",
                "owner__username",
            )
        return qs

    def import_file(self, *, upload, owner, public):
        return services.card_import(source=upload, file_name=upload.name, owner=owner, public=public)


class LorebookEntryInline(admin.StackedInline):
    model = LorebookEntry
    form = LorebookEntryForm
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


def _lorebook_files(modeladmin, request, queryset, fmt: str):
    books = list(queryset.filter(character__isnull=True)[:500])
    if not books:
        modeladmin.message_user(
            request, "Choose global lorebooks (a card's own book goes out with its card).", messages.WARNING
        )
        return None
    suffix = ".json" if fmt == "world_info" else ".lorebook.json"
    files = [
        (f"{b.name or 'lorebook'}-{str(b.code)[:8]}{suffix}", services.lorebook_export(lorebook=b, fmt=fmt))
        for b in books
    ]
    if len(files) == 1:
        name, body = files[0]
        response = HttpResponse(body, content_type="application/json")
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, body in files:
                archive.writestr(name.replace("/", "-"), body)
        name, response = "lorebooks.zip", HttpResponse(buffer.getvalue(), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, name.replace("/", "-"))
    return response


@admin.action(description="Export as SillyTavern World Info")
def export_world_info(modeladmin, request, queryset):
    return _lorebook_files(modeladmin, request, queryset, "world_info")


@admin.action(description="Export as V3 lorebook_v3")
def export_lorebook_v3(modeladmin, request, queryset):
    return _lorebook_files(modeladmin, request, queryset, "lorebook_v3")


@admin.register(Lorebook)
class LorebookAdmin(RecordsRevisions, ImportPageMixin, admin.ModelAdmin):
    change_list_template = "admin/characters/change_list_with_import.html"
    import_title = "Import lorebooks"
    import_help = (
        "SillyTavern World Info files (worlds/*.json) and V3 lorebook_v3 files, imported as global "
        "lorebooks of the owner. Files imported before by the same owner are skipped."
    )
    import_accept = ".json"
    actions = [export_world_info, export_lorebook_v3]
    list_display = ("__str__", "owner", "character", "token_budget", "scan_depth")
    list_select_related = ("owner", "character")
    autocomplete_fields = ("owner", "character")
    readonly_fields = ("revision",)
    search_fields = ("name",)
    inlines = [LorebookEntryInline]

    def import_file(self, *, upload, owner, public):
        return services.lorebook_import(source=upload, file_name=upload.name, owner=owner)


@admin.register(Revision)
class RevisionAdmin(admin.ModelAdmin):
    """Read-only: revisions are written by saves and restores, never by hand."""

    list_display = ("__str__", "character", "lorebook", "author", "created_at", "summary")
    list_select_related = ("character", "lorebook", "author")
    raw_id_fields = ("character", "lorebook", "author")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-id",)

    def get_queryset(self, request):
        long = [f"character__{name}" for name in LONG_FIELDS]
        return super().get_queryset(request).defer("changes", *long, "lorebook__description")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
