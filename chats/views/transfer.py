"""SillyTavern chats in (import onto a character) and out (JSONL or plain text, streamed)."""

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from characters.models import Character
from characters.services import human_size
from core.uploads import download_name, limit_uploads

from .. import sillytavern
from ..http import (
    get_session_for_user,
)


@login_required
@require_POST
@limit_uploads("MAX_CHAT_BYTES")
def chat_import(request, character_code, *, upload_limit):
    """Import a SillyTavern chat file (.jsonl) as a chat with this character."""
    handler = upload_limit
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
def chat_export(request, code, fmt: str):
    """The chat as a SillyTavern JSONL file or plain text, streamed a page of messages at a time."""
    session = get_session_for_user(request, code)
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
