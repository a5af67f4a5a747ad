"""The chats app's hot queries, checked by `manage.py explain_queries` (see core.hot_queries).

Each builds its query the way the page does; tests/rpchat/test_explain_queries.py checks that the
SQL is the same as what the page runs.
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from core.hot_queries import admin_changelist_queryset, hot_query
from settings_app.models import SiteSettings

from . import generation, paging, profiles
from .http import page_fields
from .lore import entries_queryset
from .models import ChatSession, LoreEffect, Message
from .prompt import history_queryset


def _largest_chat():
    return ChatSession.objects.filter(deleted_at__isnull=True).order_by("-message_count").first()


@hot_query("chat list", used_by="chats.views.chat_list (chat_user_recent_idx)")
def chat_list():
    from django.contrib.auth import get_user_model

    row = ChatSession.objects.values("user").annotate(n=Count("id")).order_by("-n").first()
    if row is None:
        return None
    user = get_user_model().objects.get(pk=row["user"])
    size = settings.RPCHAT["CHAT_LIST_PAGE_SIZE"]
    return ChatSession.objects.for_list(user)[: size + 1]


@hot_query(
    "chat page: newest messages", used_by="chats.views.chat_detail, as rows (message_session_seq_uniq)"
)
def chat_newest():
    session = _largest_chat()
    if session is None:
        return None
    return paging.page_queryset(session, fields=page_fields())


@hot_query(
    "chat page: the messages to render",
    used_by="chats.http.render_rows: a page's messages whose HTML is not cached yet",
)
def chat_to_render():
    session = _largest_chat()
    if session is None:
        return None
    return paging.messages_by_seq(session, list(range(max(session.last_seq - 49, 1), session.last_seq + 1)))


@hot_query(
    "chat page: the chat's model", used_by="chats.profiles.resolve_profile (chat page header, every reply)"
)
def chat_model():
    session = _largest_chat()
    if session is None:
        return None
    return profiles.candidates_queryset(
        user=session.user,
        character=session.character,
        chat_profile_id=session.profile_id,
        site=SiteSettings.load(),
    )


@hot_query("chat page: an older page from the middle", used_by="chats.views.chat_older")
def chat_older_middle():
    session = _largest_chat()
    if session is None:
        return None
    before = max(session.last_seq // 2, 1)
    return paging.page_queryset(session, before=before, fields=page_fields())


@hot_query("prompt: history read", used_by="chats.prompt._history")
def prompt_history():
    session = _largest_chat()
    if session is None:
        return None
    budget = SiteSettings.load().builtin_context_size
    return history_queryset(session, before_seq=session.last_seq + 1, budget=budget)


@hot_query("prompt: lore entries for a reply", used_by="chats.lore.entries_for")
def prompt_lore():
    session = _largest_chat()
    if session is None:
        return None
    return entries_queryset(session=session, character=session.character, position=session.last_seq)


@hot_query(
    "prompt: timed lore effects a reply replaces",
    used_by="chats.lore.effects_save, once a reply (loreeffect_session_pos_idx)",
)
def prompt_lore_effects():
    session = _largest_chat()
    if session is None:
        return None
    return LoreEffect.objects.filter(session=session, position__gte=session.last_seq).values("pk")[:1]


@hot_query("admin: chats list", used_by="ChatSessionAdmin changelist")
def admin_chats():
    return admin_changelist_queryset(ChatSession)


@hot_query("admin: messages list", used_by="MessageAdmin changelist")
def admin_messages():
    return admin_changelist_queryset(Message)


@hot_query(
    "stranded replies sweep",
    used_by="chats.generation.interrupt_stranded, every few seconds per worker (message_one_streaming_per_chat)",
)
def stranded_replies():
    cutoff = timezone.now() - timedelta(seconds=settings.RPCHAT["STREAM_STALE_AFTER"])
    return generation.stranded_queryset(cutoff=cutoff, exclude=[1, 2]).values_list("pk", flat=True)[:500]
