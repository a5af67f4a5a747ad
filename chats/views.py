import json
from functools import wraps

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import BadRequest, ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import condition, require_GET, require_POST

from characters.models import Character
from characters.search import search_characters
from characters.services import human_size
from core import ratelimit
from core.databases import release_connection
from core.http import private_cache, release_stamp
from core.markdown import render_cached
from core.pagination import page_number, page_of
from core.uploads import LimitedUploadHandler, download_name
from settings_app import engines
from settings_app.engines import BUILTIN_LABEL
from settings_app.models import SiteSettings

from . import forms, generation, paging, services, sillytavern
from .models import ChatSession, Message
from .search import search_messages


def _get_session_for_user(request, code) -> ChatSession:
    """The user's own chat, or 404: another user's chat does not exist for them."""
    return get_object_or_404(ChatSession.objects.for_user(request.user).with_character(), code=code)


def _get_message(session: ChatSession, seq: int) -> Message:
    return get_object_or_404(Message.objects.for_page(), session=session, seq=seq)


def prerender(request, session: ChatSession, messages) -> list:
    """Attach what each message's partial shows: its Markdown as HTML (from the cache where
    possible) and its links, reversed once per page rather than once per message.

    The cache finds a rendering by the text itself, so an edit, or an id reused after a restore,
    can never bring back another text's HTML.
    """
    base = session.get_absolute_url()
    thumbs: dict[int, str] = {}
    for m in messages:
        m.prompt_url = f"{base}messages/{m.seq}/prompt/"
        speaker = m.character or session.character
        if m.role == Message.Role.ASSISTANT and speaker.thumbnail:
            if speaker.pk not in thumbs:
                thumbs[speaker.pk] = reverse("characters:thumbnail", args=[speaker.code])
            m.thumb_url = thumbs[speaker.pk]
    done = [m for m in messages if m.status != Message.Status.STREAMING]
    html = render_cached(
        {m.pk: m.content for m in done}, allow_images=SiteSettings.for_request(request).allow_external_media
    )
    for m in done:
        m.rendered_html = mark_safe(html[m.pk])  # noqa: S308 - sanitized by render
    return messages


def _render_message(request, session: ChatSession, message: Message) -> str:
    prerender(request, session, [message])
    return render_to_string("chats/message.html", {"message": message, "session": session}, request=request)


def _chosen_speaker(request, session: ChatSession):
    """The character the user picked to answer (group chats), if any, scoped to this chat."""
    code = request.POST.get("speaker", "")
    if not code or not session.is_group:
        return None
    member = session.members.select_related("character").filter(character__code=code).first()
    if member is None:
        raise Http404("No such character in this chat.")
    return member.character


def _conflict() -> JsonResponse:
    return JsonResponse(
        {
            "error": "This message changed in another tab or window. Reload the chat to see the latest version."
        },
        status=409,
    )


def _busy() -> JsonResponse:
    return JsonResponse(
        {"error": "A reply is still being written. Wait for it or stop it first."}, status=409
    )


def _version(request) -> int:
    try:
        return int(request.POST["version"])
    except (KeyError, ValueError):
        raise BadRequest("Give the version of the message you are changing.") from None


def _generation_wait(request) -> int | None:
    """Count one generation for the user; seconds to wait when over the per-minute limit."""
    return services.generation_wait(user=request.user)


def _too_fast(wait: int, *, what: str = "replies", setting: str = "GENERATIONS_PER_MINUTE") -> JsonResponse:
    limit = settings.RPCHAT[setting]
    response = JsonResponse(
        {"error": f"This instance allows {limit} {what} a minute per person. Try again in {wait} seconds."},
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response


def generation_limited(view):
    """Refuse with 429 when the user asks for replies faster than GENERATIONS_PER_MINUTE."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if wait := _generation_wait(request):
            return _too_fast(wait)
        return view(request, *args, **kwargs)

    return wrapped


def _engine_label(site: SiteSettings) -> str:
    return BUILTIN_LABEL if site.uses_builtin_model else site.active_profile.name


@login_required
@require_GET
def chat_list(request):
    q = request.GET.get("q", "").strip()[:100]
    archived = request.GET.get("archived") == "1"
    sessions = ChatSession.objects.for_list(request.user, archived=archived)
    if q:
        sessions = sessions.filter(Q(title__icontains=q) | Q(character__name__icontains=q))
    page = page_of(
        sessions,
        number=page_number(request),
        per_page=settings.RPCHAT["CHAT_LIST_PAGE_SIZE"],
    )
    return render(request, "chats/list.html", {"page": page, "q": q, "archived": archived})


@login_required
@require_POST
def chat_new(request, character_code):
    character = get_object_or_404(Character.objects.visible_to(request.user), code=character_code)
    session = services.chat_start(user=request.user, character=character)
    return redirect(session)


@login_required
@require_GET
def chat_detail(request, code):
    session = get_object_or_404(
        ChatSession.objects.for_user(request.user)
        .with_character()
        .select_related("persona", "parent")
        .defer("parent__metadata", "parent__author_note", "persona__description"),
        code=code,
    )
    # The newest page (one keyset query), or the page around ?at=<seq> (two) from a search result.
    page, at = _opening_page(request, session)
    page_messages = prerender(request, session, page.messages)
    site = SiteSettings.load()
    return render(
        request,
        "chats/detail.html",
        {
            "session": session,
            "chat_messages": page_messages,
            "has_older": page.has_older,
            "oldest_seq": page_messages[0].seq if page_messages else 0,
            "has_newer": page.has_newer,
            "newest_seq": page_messages[-1].seq if page_messages else 0,
            "at": at,
            "engine_label": _engine_label(site),
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
    page = paging.messages_before(session, before)
    html = render_to_string(
        "chats/message_list.html",
        {"chat_messages": prerender(request, session, page.messages), "session": session},
        request=request,
    )
    return JsonResponse(
        {
            "html": html,
            "has_older": page.has_older,
            "oldest_seq": page.messages[0].seq if page.messages else before,
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
        "chats/message_list.html",
        {"chat_messages": prerender(request, session, page.messages), "session": session},
        request=request,
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
    # Limited in the service: a resend of a stored message is answered with it, not counted.
    session = _get_session_for_user(request, code)
    try:
        user_message, reply = services.message_send(
            session=session,
            user=request.user,
            content=request.POST.get("content", ""),
            client_token=request.POST.get("client_token", ""),
            speaker=_chosen_speaker(request, session),
        )
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except services.ChatBusy:
        return _busy()
    except services.TooManyReplies as exc:
        return _too_fast(exc.wait)
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
@generation_limited
def message_retry(request, code, seq):
    return _message_action(request, code, seq, lambda m: services.reply_retry(message=m))


@login_required
@require_POST
def message_swipe(request, code, seq):
    try:
        index = int(request.POST["index"])
    except (KeyError, ValueError):
        return JsonResponse({"error": "Give the index of the alternative to show."}, status=400)
    return _message_action(
        request,
        code,
        seq,
        lambda m: services.message_select_alternative(message=m, index=index, version=_version(request)),
    )


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def message_stream(request, code, seq):
    """Server-Sent Events for one reply: the text so far, each new piece, then the final HTML."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())

    # Each query gives its connection back: the stream may last minutes and needs none meanwhile.
    @sync_to_async
    def lookup():
        try:
            session = _get_session_for_user(request, code)
            return session, _get_message(session, seq)
        finally:
            release_connection()

    @sync_to_async
    def final_html(session):
        try:
            message = Message.objects.for_page().filter(session=session, seq=seq).first()
            if message is None:
                raise Http404
            return message, _render_message(request, session, message)
        finally:
            release_connection()

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


def _message_action(request, code, seq, action) -> JsonResponse:
    """Run `action` on one of the user's messages; answer with its new HTML or a readable error."""
    session = _get_session_for_user(request, code)
    message = _get_message(session, seq)
    try:
        message = action(message)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except services.ChatBusy:
        return _busy()
    except services.EditConflict:
        return _conflict()
    return _message_response(request, session, message)


def _message_response(request, session: ChatSession, message: Message) -> JsonResponse:
    return JsonResponse(
        {
            "html": _render_message(request, session, message),
            "stream_url": reply_stream_url(session, message) if message.is_streaming else "",
        }
    )


def _edit_wait(request) -> int | None:
    """Count one edit for the user; seconds to wait when over the per-minute limit."""
    return ratelimit.hit("edit", str(request.user.pk), limit=settings.RPCHAT["EDITS_PER_MINUTE"], window=60)


@login_required
@require_POST
def message_edit(request, code, seq):
    # Each edit renders the new text: without a limit one user could keep a worker rendering.
    if wait := _edit_wait(request):
        return _too_fast(wait, what="edits", setting="EDITS_PER_MINUTE")
    content = request.POST.get("content", "")
    return _message_action(
        request,
        code,
        seq,
        lambda m: services.message_edit(message=m, content=content, version=_version(request)),
    )


@login_required
@require_POST
def message_hide(request, code, seq):
    hidden = request.POST.get("hidden") == "1"
    return _message_action(
        request,
        code,
        seq,
        lambda m: services.message_set_hidden(message=m, hidden=hidden, version=_version(request)),
    )


@login_required
@require_POST
def message_delete(request, code, seq):
    session = _get_session_for_user(request, code)
    message = _get_message(session, seq)
    try:
        deleted = services.message_delete(message=message, and_after=request.POST.get("and_after") == "1")
    except services.ChatBusy:
        return _busy()
    return JsonResponse(
        {"deleted": deleted, "from_seq": message.seq, "and_after": request.POST.get("and_after") == "1"}
    )


@login_required
@require_POST
@generation_limited
def message_regenerate(request, code, seq):
    return _message_action(request, code, seq, lambda m: services.reply_regenerate(message=m))


@login_required
@require_POST
@generation_limited
def message_continue(request, code, seq):
    return _message_action(request, code, seq, lambda m: services.reply_continue(message=m))


@login_required
@require_POST
def message_branch(request, code, seq):
    session = _get_session_for_user(request, code)
    message = _get_message(session, seq)
    branch = services.chat_branch(session=session, at_seq=message.seq)
    return JsonResponse({"url": branch.get_absolute_url()})


@login_required
@require_GET
def message_prompt(request, code, seq):
    """The prompt inspector: exactly what was sent to the engine for this reply."""
    session = _get_session_for_user(request, code)
    message = get_object_or_404(Message.objects.select_related("prompt_snapshot"), session=session, seq=seq)
    snapshot = getattr(message, "prompt_snapshot", None)
    return render(
        request,
        "chats/prompt.html",
        {
            "session": session,
            "message": message,
            "prompt": snapshot.data if snapshot else None,
            "meta": message.meta,
        },
    )


@login_required
@require_POST
@generation_limited
def chat_reply(request, code):
    """Ask for a reply without writing a message (a group member's turn, or "go on")."""
    session = _get_session_for_user(request, code)
    try:
        reply = services.reply_request(session=session, speaker=_chosen_speaker(request, session))
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except services.ChatBusy:
        return _busy()
    return JsonResponse(
        {"html": _render_message(request, session, reply), "stream_url": reply_stream_url(session, reply)}
    )


async def chat_impersonate(request, code):
    """The model writes the user's next message; it goes into the input box, not the chat."""
    if request.method != "POST":
        return JsonResponse({"error": "POST only."}, status=405)
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"error": "Log in first."}, status=401)

    @sync_to_async
    def lookup():
        try:
            return _get_session_for_user(request, code)
        finally:
            release_connection()  # not held while the model writes

    session = await lookup()
    if wait := await sync_to_async(_generation_wait)(request):
        return _too_fast(wait)
    try:
        text = await generation.impersonate(session)
    except engines.EngineError as exc:
        return JsonResponse({"error": str(exc)}, status=502)
    return JsonResponse({"text": text})


@login_required
def chat_settings(request, code):
    session = _get_session_for_user(request, code)
    form = forms.ChatSettingsForm(request.POST or None, instance=session, user=request.user)
    member_form = forms.AddMemberForm(user=request.user, session=session)
    if request.method == "POST" and form.is_valid():
        form.save()
        session.lorebooks.set(form.cleaned_data["lorebooks"])
        messages.success(request, "Chat settings saved.")
        return redirect(session)
    members = session.members.select_related("character").only(
        "id", "muted", "position", "character__id", "character__name", "character__code"
    )
    return render(
        request,
        "chats/settings.html",
        {"session": session, "form": form, "member_form": member_form, "members": members},
    )


@login_required
@require_POST
def chat_members(request, code):
    session = _get_session_for_user(request, code)
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
    session = _get_session_for_user(request, code)
    archived = request.POST.get("archived", "1") == "1"
    services.chat_archive(session=session, archived=archived)
    messages.success(request, "Chat archived." if archived else "Chat moved back to your chats.")
    return redirect("chats:list")


@login_required
def chat_delete(request, code):
    session = _get_session_for_user(request, code)
    if request.method == "POST":
        services.chat_delete(session=session)
        messages.success(
            request,
            f"“{session}” was deleted. You can restore it from Trash for {settings.RPCHAT['TRASH_DAYS']} days.",
        )
        return redirect("chats:list")
    return render(request, "chats/confirm_delete.html", {"session": session})


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
    character = get_object_or_404(Character.objects.visible_to(request.user), code=character_code)
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
def message_source(request, code, seq):
    """A message's raw text and version, for editing it in place."""
    session = _get_session_for_user(request, code)
    message = get_object_or_404(
        Message.objects.only("content", "version", "status"), session=session, seq=seq
    )
    return JsonResponse({"content": message.content, "version": message.version, "status": message.status})


@login_required
@require_GET
def trash(request):
    """Deleted chats and characters the user can still restore."""
    from characters.models import Character

    chats = (
        ChatSession.objects.filter(user=request.user, deleted_at__isnull=False)
        .with_character()
        .order_by("-deleted_at")[:200]
    )
    characters = (
        Character.objects.filter(owner=request.user, deleted_at__isnull=False)
        .only("code", "name", "deleted_at")
        .order_by("-deleted_at")[:200]
    )
    return render(
        request,
        "chats/trash.html",
        {"chats": chats, "characters": characters, "days": settings.RPCHAT["TRASH_DAYS"]},
    )


@login_required
@require_POST
def chat_restore(request, code):
    session = get_object_or_404(ChatSession, user=request.user, code=code, deleted_at__isnull=False)
    services.chat_restore(session=session)
    messages.success(request, f"“{session}” is back in your chats.")
    return redirect(session)


@login_required
@require_GET
def chat_export(request, code, fmt: str):
    """The chat as a SillyTavern JSONL file or plain text, streamed a page of messages at a time."""
    session = _get_session_for_user(request, code)
    if fmt == "jsonl":
        chunks, content_type, suffix = (
            sillytavern.chat_export_sillytavern(session),
            "application/jsonl",
            "jsonl",
        )
    else:
        chunks, content_type, suffix = sillytavern.chat_export_text(session), "text/plain", "txt"
    body = _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    filename = download_name(session.title or session.character.name, f".{suffix}")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["Cache-Control"] = "private, no-cache"
    return response
