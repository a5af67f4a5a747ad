"""The chat pages: the chat list, a chat (and its older and newer message pages), new chat, and a chat's settings, members, archive and delete."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import condition, require_GET, require_POST

from characters.models import Character
from core.http import private_cache, release_stamp
from core.pagination import Page, page_number, page_of
from core.prepared import PreparedQuery
from settings_app.models import SiteSettings

from .. import forms, paging, services
from ..http import (
    engine_label,
    get_session_for_user,
    int_param,
    page_fields,
    render_messages,
    render_rows,
    session_for_request,
)
from ..models import ChatSession


@login_required
@require_GET
def chat_list(request):
    q = request.GET.get("q", "").strip()[:100]
    archived = request.GET.get("archived") == "1"
    number, per_page = page_number(request), settings.RPCHAT["CHAT_LIST_PAGE_SIZE"]
    if number == 1 and not q:  # the page nearly every visit shows: compiled once per connection
        found = _FIRST_CHATS.instances(per_page + 1, archived, user=request.user.pk)
        page = Page(rows=found[:per_page], number=1, has_next=len(found) > per_page)
    else:
        sessions = ChatSession.objects.for_list(request.user, archived=archived)
        if q:
            sessions = sessions.filter(Q(title__icontains=q) | Q(character__name__icontains=q))
        page = page_of(sessions, number=number, per_page=per_page)
    return render(request, "chats/list.html", {"page": page, "q": q, "archived": archived})


# The chat list's first page without a search (core.prepared; other pages' offsets and searched
# words would each be a query of their own).
_FIRST_CHATS = PreparedQuery(
    ChatSession, lambda size, archived, *, user: ChatSession.objects.for_list(user, archived=archived)[:size]
)


@login_required
@require_POST
def chat_new(request, character_code):
    character = get_object_or_404(Character.objects.visible_to(request.user), code=character_code)
    session = services.chat_start(user=request.user, character=character)
    return redirect(session)


# The chat with what its page shows of its character, persona and parent (core.prepared: compiled
# once per connection).
_CHAT_PAGE = PreparedQuery(
    ChatSession,
    lambda *, user, code: (
        ChatSession.objects.for_user(user)
        .with_character()
        .select_related("persona", "parent")
        .defer("parent__metadata", "parent__author_note", "persona__description")
        .filter(code=code)
    ),
)


@login_required
@require_GET
@never_cache  # a live page: Back (from the prompt inspector, say) must not show the copy first loaded
def chat_detail(request, code):
    found = _CHAT_PAGE.instances(user=request.user.pk, code=code)
    if not found:
        raise Http404("No ChatSession matches the given query.")
    session = found[0]
    # The newest page (one keyset query, as rows: only the messages whose HTML is not cached are
    # loaded as instances), or the page around ?at=<seq> (two) from a search result.
    page, at = _opening_page(request, session)
    seqs = [_seq(m) for m in page.messages]
    return render(
        request,
        "chats/detail.html",
        {
            "session": session,
            "chat_messages_html": _render_page(request, session, page.messages),
            "has_older": page.has_older,
            "oldest_seq": seqs[0] if seqs else 0,
            "has_newer": page.has_newer,
            "newest_seq": seqs[-1] if seqs else 0,
            "at": at,
            "engine_label": engine_label(request, session),
            "max_chars": settings.RPCHAT["MAX_MESSAGE_CHARS"],
            "members": session.members.select_related("character").only(
                "id", "muted", "character__id", "character__name", "character__code"
            )
            if session.is_group
            else [],
        },
    )


def _opening_page(request, session: ChatSession) -> tuple[paging.MessagePage, int | None]:
    try:
        at = int(request.GET["at"])
    except (KeyError, ValueError):
        return paging.messages_before(session, fields=page_fields()), None
    return paging.messages_around(session, at), at


def _seq(message) -> int:
    return message["seq"] if isinstance(message, dict) else message.seq


def _render_page(request, session: ChatSession, messages: list):
    """A page's HTML, from rows (page_fields()) or from model instances."""
    if messages and isinstance(messages[0], dict):
        return render_rows(request, session, messages)
    return render_messages(request, session, messages)


def _fragment_etag(request, code, *, before=None, after=None) -> str:
    """A message-list fragment's ETag: its rows' keys, plus what else the HTML shows."""
    session = session_for_request(request, code)
    site = SiteSettings.load()
    return paging.page_etag(
        session,
        session.character.updated_at,
        site.updated_at,
        release_stamp(),
        before=before,
        after=after,
    )


def _older_etag(request, code) -> str | None:
    before = int_param(request, "before")
    return None if before is None else _fragment_etag(request, code, before=before)


def _newer_etag(request, code) -> str | None:
    after = int_param(request, "after")
    return None if after is None else _fragment_etag(request, code, after=after)


def _fragment(request, code, *, older: bool) -> JsonResponse:
    """A page of messages before `?before=` or after `?after=` (a seq), as HTML for the page to add."""
    session = session_for_request(request, code)
    param, more, edge = (
        ("before", "has_older", "oldest_seq") if older else ("after", "has_newer", "newest_seq")
    )
    cursor = int_param(request, param)
    if cursor is None:
        return JsonResponse({"error": f"Give ?{param}=<seq>."}, status=400)
    fields = page_fields()
    page = (
        paging.messages_before(session, cursor, fields=fields)
        if older
        else paging.messages_after(session, cursor, fields=fields)
    )
    html = render_to_string(
        "chats/message_list.html", {"chat_messages_html": _render_page(request, session, page.messages)}
    )
    edge_seq = _seq(page.messages[0 if older else -1]) if page.messages else cursor
    return JsonResponse({"html": html, more: page.has_older if older else page.has_newer, edge: edge_seq})


@login_required
@require_GET
@private_cache()
@condition(etag_func=_older_etag)
def chat_older(request, code):
    """A page of messages older than `before`, for the chat page to prepend."""
    return _fragment(request, code, older=True)


@login_required
@require_GET
@private_cache()
@condition(etag_func=_newer_etag)
def chat_newer(request, code):
    """A page of messages newer than `after`, for the chat page to append."""
    return _fragment(request, code, older=False)


@login_required
def chat_settings(request, code):
    session = get_session_for_user(request, code)
    form = forms.ChatSettingsForm(request.POST or None, instance=session, user=request.user)
    member_form = forms.AddMemberForm(user=request.user, session=session)
    if request.method == "POST" and form.is_valid():
        form.save()
        session.lorebooks.set(form.cleaned_data["lorebooks"])
        services.persona_lock_set(
            user=request.user,
            character=session.character,
            persona=session.persona if form.cleaned_data["lock_persona"] else None,
            was=form.fields["lock_persona"].initial,
        )
        messages.success(request, "Chat settings saved.")
        return redirect(session)
    members = session.members.select_related("character").only(
        "id", "muted", "position", "character__id", "character__name", "character__code"
    )
    return render(
        request,
        "chats/settings.html",
        {
            "session": session,
            "form": form,
            "member_form": member_form,
            "members": members,
            "max_background_bytes": settings.RPCHAT["MAX_BACKGROUND_BYTES"],
        },
    )


@login_required
@require_POST
def chat_members(request, code):
    session = get_session_for_user(request, code)
    if request.POST.get("action") == "add":
        form = forms.AddMemberForm(request.POST, user=request.user, session=session)
        if not form.is_valid():
            messages.error(request, "Pick a character you can see to add.")
            return redirect("chats:settings", code=session.code)
        services.member_add(session=session, character=form.cleaned_data["character"])
        return redirect("chats:settings", code=session.code)
    form = forms.MemberActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a character of this chat and whether to mute, unmute or remove it.")
        return redirect("chats:settings", code=session.code)
    action, character_id = form.cleaned_data["action"], form.cleaned_data["character_id"]
    try:
        if action == "remove":
            services.member_remove(session=session, character_id=character_id)
        else:
            services.member_set_muted(session=session, character_id=character_id, muted=action == "mute")
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect("chats:settings", code=session.code)


@login_required
@require_POST
def chat_archive(request, code):
    session = get_session_for_user(request, code)
    archived = request.POST.get("archived", "1") == "1"
    services.chat_archive(session=session, archived=archived)
    messages.success(request, "Chat archived." if archived else "Chat moved back to your chats.")
    return redirect("chats:list")


@login_required
def chat_delete(request, code):
    session = get_session_for_user(request, code)
    if request.method == "POST":
        services.chat_delete(session=session)
        messages.success(
            request,
            f"“{session}” was deleted. You can restore it from Trash for {settings.RPCHAT['TRASH_DAYS']} days.",
        )
        return redirect("chats:list")
    return render(request, "chats/confirm_delete.html", {"session": session})
