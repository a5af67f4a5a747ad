"""A reply as it is written, as Server-Sent Events: a snapshot, the new text as it comes, then the final rendered message."""

import json

from asgiref.sync import sync_to_async
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, StreamingHttpResponse

from core.databases import release_connection

from .. import generation
from ..http import (
    get_message,
    get_session_for_user,
    render_message,
)
from ..models import Message


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
            session = get_session_for_user(request, code)
            return session, get_message(session, seq)
        finally:
            release_connection()

    @sync_to_async
    def final_html(session):
        try:
            message = Message.objects.for_page().filter(session=session, seq=seq).first()
            if message is None:
                raise Http404
            return message, render_message(request, session, message)
        finally:
            release_connection()

    session, message = await lookup()

    def thought(reasoning: str) -> str:
        # The chat's setting hides the reasoning: it is kept, not shown.
        return reasoning if session.show_reasoning else ""

    async def events():
        # The browser reconnects by itself after a drop; each connection starts with a snapshot.
        yield "retry: 1000\n\n"
        if message.is_streaming:
            async for event in generation.follow(message.pk):
                if event.kind == "snapshot":
                    yield _sse("snapshot", {"text": event.text, "reasoning": thought(event.reasoning)})
                elif event.kind == "delta":
                    yield _sse("delta", {"text": event.text})
                elif event.kind == "reasoning":
                    if session.show_reasoning:
                        yield _sse("reasoning", {"text": event.text})
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
