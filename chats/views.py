import json

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import condition, require_GET, require_POST

from characters.search import search_characters
from characters.views import get_character_for_user
from rpchat.http import private_cache, release_stamp
from rpchat.pagination import page_number, page_of
from settings_app.models import SiteSettings

from . import generation, paging, services
from .engines import BUILTIN_LABEL
from .models import ChatSession, Message
from .search import search_messages


def _get_session_for_user(request, code) -> ChatSession:
    """The user's own chat, or 404: another user's chat does not exist for them."""
    return get_object_or_404(ChatSession.objects.for_user(request.user).with_character(), code=code)


def _get_message(session: ChatSession, seq: int) -> Message:
    return get_object_or_404(Message.objects.for_page(), session=session, seq=seq)


def _render_message(request, session: ChatSession, message: Message) -> str:
    return render_to_string(
        "chats/message.html", {"message": message, "session": session}, request=request
    )


def _engine_label(site: SiteSettings) -> str:
    return BUILTIN_LABEL if site.uses_builtin_model else site.active_profile.name


@login_required
@require_GET
def chat_list(request):
    sessions = (
        ChatSession.objects.for_user(request.user)
        .filter(archived_at__isnull=True)
        .with_character()
        .order_by("-last_message_at", "-id")
    )
    page = page_of(
        sessions,
        number=page_number(request),
        per_page=settings.RPCHAT["CHAT_LIST_PAGE_SIZE"],
    )
    return render(request, "chats/list.html", {"page": page})


@login_required
@require_POST
def chat_new(request, character_code):
    character = get_character_for_user(request, character_code)
    session = services.chat_start(user=request.user, character=character)
    return redirect(session)


@login_required
@require_GET
def chat_detail(request, code):
    session = _get_session_for_user(request, code)
    # The newest page (one keyset query), or the page around ?at=<seq> (two) from a search result.
    page, at = _opening_page(request, session)
    messages = page.messages
    site = SiteSettings.load()
    return render(
        request,
        "chats/detail.html",
        {
            "session": session,
            "chat_messages": messages,
            "has_older": page.has_older,
            "oldest_seq": messages[0].seq if messages else 0,
            "has_newer": page.has_newer,
            "newest_seq": messages[-1].seq if messages else 0,
            "at": at,
            "engine_label": _engine_label(site),
            "max_chars": settings.RPCHAT["MAX_MESSAGE_CHARS"],
        },
    )


def _opening_page(request, session: ChatSession) -> tuple[paging.MessagePage, int | None]:
    try:
        at = int(request.GET["at"])
    except (KeyError, ValueError):
        return paging.messages_before(session), None
    return paging.messages_around(session, at), at


def _session_for_request(request, code) -> ChatSession:
    """_get_session_for_user, once per request: the ETag and the view share it."""
    cached = getattr(request, "_chat_session", None)
    if cached is None or cached.code != code:
        cached = _get_session_for_user(request, code)
        request._chat_session = cached
    return cached


def _int_param(request, name: str) -> int | None:
    try:
        return max(0, int(request.GET[name]))
    except (KeyError, ValueError):
        return None


def _fragment_etag(request, code, *, before=None, after=None) -> str:
    """A message-list fragment's ETag: its rows' keys, plus what else the HTML shows."""
    session = _session_for_request(request, code)
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
    before = _int_param(request, "before")
    return None if before is None else _fragment_etag(request, code, before=before)


@login_required
@require_GET
@private_cache()
@condition(etag_func=_older_etag)
def chat_older(request, code):
    """A page of messages older than `before` (a seq), as HTML for the chat page to prepend."""
    session = _session_for_request(request, code)
    before = _int_param(request, "before")
    if before is None:
        return JsonResponse({"error": "Give ?before=<seq>."}, status=400)
    size = settings.RPCHAT["MESSAGE_PAGE_SIZE"]
    rows = list(
        Message.objects.for_page()
        .filter(session=session, seq__lt=before)
        .order_by("-seq")[: size + 1]
    )
    has_older = len(rows) > size
    messages = rows[:size][::-1]
    html = render_to_string(
        "chats/message_list.html", {"chat_messages": messages, "session": session}, request=request
    )
    return JsonResponse(
        {
            "html": html,
            "has_older": has_older,
            "oldest_seq": messages[0].seq if messages else before,
        }
    )


def _newer_etag(request, code) -> str | None:
    after = _int_param(request, "after")
    return None if after is None else _fragment_etag(request, code, after=after)


@login_required
@require_GET
@private_cache()
@condition(etag_func=_newer_etag)
def chat_newer(request, code):
    """A page of messages newer than `after` (a seq), as HTML for the chat page to append."""
    session = _session_for_request(request, code)
    after = _int_param(request, "after")
    if after is None:
        return JsonResponse({"error": "Give ?after=<seq>."}, status=400)
    page = paging.messages_after(session, after)
    html = render_to_string(
        "chats/message_list.html", {"chat_messages": page.messages, "session": session}, request=request
    )
    return JsonResponse(
        {
            "html": html,
            "has_newer": page.has_newer,
            "newest_seq": page.messages[-1].seq if page.messages else after,
        }
    )


@login_required
@require_GET
def search(request):
    """Search the user's messages and the characters they may see."""
    query = request.GET.get("q", "").strip()[:200]
    before = _int_param(request, "before")
    chat = None
    if chat_code := request.GET.get("chat"):
        try:
            chat = _get_session_for_user(request, chat_code)
        except ValidationError:
            raise Http404("No such chat.") from None
    results = search_messages(user=request.user, query=query, session=chat, before=before)
    characters = [] if before or chat else search_characters(user=request.user, query=query, limit=8)
    return render(
        request,
        "chats/search.html",
        {"q": query, "search_q": query, "results": results, "characters": characters, "chat": chat},
    )


@login_required
@require_POST
def message_send(request, code):
    session = _get_session_for_user(request, code)
    try:
        user_message, reply = services.message_send(
            session=session,
            user=request.user,
            content=request.POST.get("content", ""),
            client_token=request.POST.get("client_token", ""),
        )
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except services.ChatBusy:
        return JsonResponse(
            {"error": "A reply is still being written. Wait for it or stop it first."}, status=409
        )
    return JsonResponse(
        {
            "html": _render_message(request, session, user_message)
            + _render_message(request, session, reply),
            "reply_seq": reply.seq,
            "stream_url": reply_stream_url(session, reply),
        }
    )


def reply_stream_url(session: ChatSession, message: Message) -> str:
    return reverse("chats:message_stream", args=[session.code, message.seq])


@login_required
@require_POST
def message_stop(request, code, seq):
    session = _get_session_for_user(request, code)
    message = _get_message(session, seq)
    if message.is_streaming:
        generation.request_stop(message.pk)
    return JsonResponse({"stopping": message.is_streaming})


@login_required
@require_POST
def message_retry(request, code, seq):
    session = _get_session_for_user(request, code)
    message = _get_message(session, seq)
    try:
        message = services.reply_retry(message=message)
    except services.ChatBusy:
        return JsonResponse({"error": "A reply is still being written."}, status=409)
    return JsonResponse(
        {
            "html": _render_message(request, session, message),
            "stream_url": reply_stream_url(session, message) if message.is_streaming else "",
        }
    )


@login_required
@require_POST
def message_swipe(request, code, seq):
    session = _get_session_for_user(request, code)
    message = _get_message(session, seq)
    try:
        index = int(request.POST["index"])
        version = int(request.POST["version"])
    except (KeyError, ValueError):
        return JsonResponse({"error": "Give index and version."}, status=400)
    try:
        message = services.message_select_alternative(message=message, index=index, version=version)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except services.EditConflict:
        return JsonResponse(
            {"error": "This message changed in another tab. Reload the chat to see it."}, status=409
        )
    return JsonResponse({"html": _render_message(request, session, message)})


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def message_stream(request, code, seq):
    """Server-Sent Events for one reply: the text so far, each new piece, then the final HTML."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())

    @sync_to_async
    def lookup():
        session = _get_session_for_user(request, code)
        return session, _get_message(session, seq)

    @sync_to_async
    def final_html(session):
        message = Message.objects.for_page().filter(session=session, seq=seq).first()
        if message is None:
            raise Http404
        return message, _render_message(request, session, message)

    session, message = await lookup()

    async def events():
        # The browser reconnects by itself after a drop; each connection starts with a snapshot.
        yield "retry: 1000\n\n"
        if message.is_streaming:
            async for event in generation.follow(message.pk):
                if event.kind == "snapshot":
                    yield _sse("snapshot", {"text": event.text})
                elif event.kind == "delta":
                    yield _sse("delta", {"text": event.text})
                else:
                    break
        final, html = await final_html(session)
        yield _sse(
            "done",
            {"status": final.status, "error": final.error, "html": html, "version": final.version},
        )

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
