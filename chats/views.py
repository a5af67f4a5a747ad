import json

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from characters.services import human_size
from characters.views import get_character_for_user
from rpchat.pagination import page_number, page_of
from rpchat.uploads import LimitedUploadHandler, download_name
from settings_app.models import SiteSettings

from . import generation, services, sillytavern
from .engines import BUILTIN_LABEL
from .models import ChatSession, Message


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
    size = settings.RPCHAT["MESSAGE_PAGE_SIZE"]
    # Newest page: one keyset query on (session, seq), at any chat length.
    newest = list(Message.objects.for_page().filter(session=session).order_by("-seq")[: size + 1])
    has_older = len(newest) > size
    messages = newest[:size][::-1]
    site = SiteSettings.load()
    return render(
        request,
        "chats/detail.html",
        {
            "session": session,
            "chat_messages": messages,
            "has_older": has_older,
            "oldest_seq": messages[0].seq if messages else 0,
            "engine_label": _engine_label(site),
            "max_chars": settings.RPCHAT["MAX_MESSAGE_CHARS"],
        },
    )


@login_required
@require_GET
def chat_older(request, code):
    """A page of messages older than `before` (a seq), as HTML for the chat page to prepend."""
    session = _get_session_for_user(request, code)
    try:
        before = int(request.GET["before"])
    except (KeyError, ValueError):
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


# --- SillyTavern import and export ----------------------------------------------------------------


@csrf_exempt
@login_required
@require_POST
def chat_import(request, character_code):
    """Import a SillyTavern chat file (.jsonl) as a chat with this character."""
    handler = LimitedUploadHandler(request, limit=settings.RPCHAT["MAX_CHAT_BYTES"])
    request.upload_handlers.insert(0, handler)
    return _chat_import(request, character_code, handler)


@csrf_protect
def _chat_import(request, character_code, handler):
    character = get_character_for_user(request, character_code)
    upload = request.FILES.get("file")
    if handler.too_large:
        messages.error(
            request,
            f"{handler.too_large[0]}: the file is larger than {human_size(handler.limit)} (RPCHAT_MAX_CHAT_BYTES).",
        )
        return redirect(character)
    if upload is None:
        messages.error(request, "Choose a SillyTavern chat file (.jsonl) to import.")
        return redirect(character)
    result = sillytavern.chat_import_sillytavern(
        source=upload,
        file_name=upload.name,
        user=request.user,
        character=character,
        skip_broken_lines=request.POST.get("skip_broken_lines") == "1",
    )
    if result.status == "failed":
        messages.error(request, f"{upload.name} was not imported: {result.reason}.")
        return redirect(character)
    for warning in result.warnings:
        messages.warning(request, f"{upload.name}: {warning}.")
    if result.status == "skipped":
        messages.info(request, f"{upload.name} was imported before; here it is.")
    else:
        messages.success(request, f"Imported {result.reason} from {upload.name}.")
    return redirect(result.object)


async def _async_chunks(chunks):
    """Serve a sync generator to an ASGI server a chunk at a time: given a sync iterator,
    StreamingHttpResponse under ASGI would read all of it into a list first."""
    done = object()
    pull = sync_to_async(next)
    while (chunk := await pull(chunks, done)) is not done:
        yield chunk


@login_required
@require_GET
def chat_export(request, code, fmt: str):
    """The chat as a SillyTavern JSONL file or plain text, streamed a page of messages at a time."""
    session = _get_session_for_user(request, code)
    if fmt == "jsonl":
        chunks, content_type, suffix = sillytavern.chat_export_sillytavern(session), "application/jsonl", "jsonl"
    else:
        chunks, content_type, suffix = sillytavern.chat_export_text(session), "text/plain", "txt"
    body = _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    filename = download_name(session.title or session.character.name, f".{suffix}")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["Cache-Control"] = "private, no-cache"
    return response
