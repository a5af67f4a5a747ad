"""What a user does to messages: send, stop, retry, swipe, edit, hide, delete, regenerate, continue, branch, see the source or the prompt; ask for a reply or a draft."""

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from core.databases import release_connection
from settings_app import engines

from .. import generation, services
from ..http import (
    busy,
    chosen_speaker,
    content_response,
    edit_wait,
    generation_limited,
    generation_wait,
    get_message_for_user,
    get_session_for_user,
    message_action,
    posted_version,
    render_message,
    render_messages,
    reply_stream_url,
    too_fast,
)
from ..models import Message


@login_required
@require_POST
def message_send(request, code):
    # Limited in the service: a resend of a stored message is answered with it, not counted.
    session = get_session_for_user(request, code)
    try:
        user_message, reply = services.message_send(
            session=session,
            user=request.user,
            content=request.POST.get("content", ""),
            client_token=request.POST.get("client_token", ""),
            speaker=chosen_speaker(request, session),
        )
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except services.ChatBusy:
        return busy()
    except services.TooManyReplies as exc:
        return too_fast(exc.wait)
    return JsonResponse(
        {
            "html": render_messages(request, session, [user_message, reply]),
            "reply_seq": reply.seq,
            "stream_url": reply_stream_url(session, reply),
        }
    )


@login_required
@require_POST
def message_stop(request, code, seq):
    _, message = get_message_for_user(request, code, seq)
    if message.is_streaming:
        generation.request_stop(message.pk)
    return JsonResponse({"stopping": message.is_streaming})


@login_required
@require_POST
@generation_limited
def message_retry(request, code, seq):
    return message_action(request, code, seq, lambda m: services.reply_retry(message=m))


@login_required
@require_POST
def message_swipe(request, code, seq):
    try:
        index = int(request.POST["index"])
    except (KeyError, ValueError):
        return JsonResponse({"error": "Give the index of the alternative to show."}, status=400)
    return message_action(
        request,
        code,
        seq,
        lambda m: services.message_select_alternative(
            message=m, index=index, version=posted_version(request)
        ),
    )


@login_required
@require_POST
def message_edit(request, code, seq):
    # Each edit renders the new text: without a limit one user could keep a worker rendering.
    if wait := edit_wait(request):
        return too_fast(wait, what="edits", setting="EDITS_PER_MINUTE")
    content = request.POST.get("content", "")
    # Only the text and the version change (and the version check means the rest of the message is
    # as the page shows it): the answer is the text's new HTML, which the page puts in place.
    return message_action(
        request,
        code,
        seq,
        lambda m: services.message_edit(message=m, content=content, version=posted_version(request)),
        respond=content_response,
    )


@login_required
@require_POST
def message_hide(request, code, seq):
    hidden = request.POST.get("hidden") == "1"
    return message_action(
        request,
        code,
        seq,
        lambda m: services.message_set_hidden(message=m, hidden=hidden, version=posted_version(request)),
    )


@login_required
@require_POST
def message_delete(request, code, seq):
    _, message = get_message_for_user(request, code, seq)
    try:
        deleted = services.message_delete(message=message, and_after=request.POST.get("and_after") == "1")
    except services.ChatBusy:
        return busy()
    return JsonResponse(
        {"deleted": deleted, "from_seq": message.seq, "and_after": request.POST.get("and_after") == "1"}
    )


@login_required
@require_POST
@generation_limited
def message_regenerate(request, code, seq):
    return message_action(request, code, seq, lambda m: services.reply_regenerate(message=m))


@login_required
@require_POST
@generation_limited
def message_continue(request, code, seq):
    return message_action(request, code, seq, lambda m: services.reply_continue(message=m))


@login_required
@require_POST
def message_branch(request, code, seq):
    session, message = get_message_for_user(request, code, seq)
    branch = services.chat_branch(session=session, at_seq=message.seq)
    return JsonResponse({"url": branch.get_absolute_url()})


@login_required
@require_GET
def message_source(request, code, seq):
    """A message's raw text and version, for editing it in place."""
    session = get_session_for_user(request, code)
    message = get_object_or_404(
        Message.objects.only("content", "version", "status"), session=session, seq=seq
    )
    return JsonResponse({"content": message.content, "version": message.version, "status": message.status})


@login_required
@require_GET
def message_prompt(request, code, seq):
    """The prompt inspector: exactly what was sent to the engine for this reply."""
    session = get_session_for_user(request, code)
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
    session = get_session_for_user(request, code)
    try:
        reply = services.reply_request(session=session, speaker=chosen_speaker(request, session))
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except services.ChatBusy:
        return busy()
    return JsonResponse(
        {"html": render_message(request, session, reply), "stream_url": reply_stream_url(session, reply)}
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
            return get_session_for_user(request, code)
        finally:
            release_connection()  # not held while the model writes

    session = await lookup()
    if wait := await sync_to_async(generation_wait)(request):
        return too_fast(wait)
    try:
        text = await generation.impersonate(session)
    except engines.EngineError as exc:
        return JsonResponse({"error": str(exc)}, status=502)
    return JsonResponse({"text": text})
