"""What the chat views share: scoped lookups, rendering a message, and the answers their actions give."""

import uuid
from functools import wraps

from django.conf import settings
from django.core.exceptions import BadRequest
from django.http import Http404, JsonResponse
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from core import ratelimit
from core.http import once_per_request
from core.markdown import render_cached
from core.prepared import PreparedQuery
from core.urlcache import cached_reverse
from settings_app.engines import BUILTIN_LABEL
from settings_app.models import SiteSettings

from . import fragments, paging, profiles, services
from .models import LONG_FIELDS, ChatSession, Message

# Compiled once per connection (core.prepared): every chat page and action starts with it.
_USERS_CHAT = PreparedQuery(
    ChatSession, lambda *, user, code: ChatSession.objects.for_user(user).with_character().filter(code=code)
)


def get_session_for_user(request, code) -> ChatSession:
    """The user's own chat, or 404: another user's chat does not exist for them."""
    found = _USERS_CHAT.instances(user=request.user.pk, code=_uuid(code))
    if not found:
        raise Http404("No ChatSession matches the given query.")
    return found[0]


def _uuid(code) -> uuid.UUID:
    if isinstance(code, uuid.UUID):
        return code
    try:
        return uuid.UUID(str(code))
    except ValueError:
        raise Http404("No ChatSession matches the given query.") from None


# The largest seq a message can have on every database (a PositiveIntegerField is a 32-bit integer
# on PostgreSQL): a larger one in a URL is a 404, never a driver's overflow error.
MAX_SEQ = 2**31 - 1

# One message of a chat with what its partial shows (core.prepared: every message action reads it).
_MESSAGE = PreparedQuery(
    Message, lambda *, session, seq: Message.objects.for_page().filter(session=session, seq=seq)
)


def get_message(session: ChatSession, seq: int) -> Message:
    """Message `seq` of the chat, or 404 (the chat is already the user's: get_session_for_user)."""
    if not 0 <= seq <= MAX_SEQ:  # the URL's <int:seq> has no upper bound; the column has
        raise Http404("No Message matches the given query.")
    found = _MESSAGE.instances(session=session.pk, seq=seq)
    if not found:
        raise Http404("No Message matches the given query.")
    return found[0]


# One message of the user's chat, with the chat (and its character, as _USERS_CHAT has it) joined:
# what every message action reads, in one query instead of the two above.
_USERS_MESSAGE = PreparedQuery(
    Message,
    lambda *, user, code, seq: (
        Message.objects.for_page()
        .select_related("session__character")
        .defer(*(f"session__character__{f}" for f in LONG_FIELDS))
        .filter(session__user=user, session__deleted_at__isnull=True, session__code=code, seq=seq)
    ),
)


def get_message_for_user(request, code, seq: int) -> tuple[ChatSession, Message]:
    """The user's chat and its message `seq`, or 404 (saying which of the two is missing)."""
    if 0 <= seq <= MAX_SEQ:
        found = _USERS_MESSAGE.instances(user=request.user.pk, code=_uuid(code), seq=seq)
        if found:
            return found[0].session, found[0]
    session = get_session_for_user(request, code)
    return session, get_message(session, seq)


def prerender(request, session: ChatSession, messages, *, markdown: bool = True) -> list:
    """Attach what each message's partial shows: its Markdown as HTML (from the cache where
    possible; not with `markdown=False`) and its links, reversed once per page rather than once
    per message.

    The cache finds a rendering by the text itself, so an edit, or an id reused after a restore,
    can never bring back another text's HTML.
    """
    base = session.get_absolute_url()
    thumbs: dict[int, str] = {}
    for m in messages:
        m.prompt_url = f"{base}messages/{m.seq}/prompt/"
        m.pin_url = f"{base}messages/{m.seq}/pin/"
        speaker = m.character or session.character
        if m.role == Message.Role.ASSISTANT and speaker.thumbnail:
            if speaker.pk not in thumbs:
                thumbs[speaker.pk] = cached_reverse("characters:thumbnail", args=[speaker.code])
            m.thumb_url = thumbs[speaker.pk]
    if not markdown:
        return messages
    done = [m for m in messages if m.status != Message.Status.STREAMING]
    html = render_cached(
        {m.pk: m.content for m in done}, allow_images=SiteSettings.for_request(request).allow_external_media
    )
    for m in done:
        m.rendered_html = mark_safe(html[m.pk])  # noqa: S308 - sanitized by render
    return messages


def content_response(request, session: ChatSession, message: Message) -> JsonResponse:
    """A message's text as the partial shows it (its Markdown, sanitized; from the cache where
    possible) and its version, for a page that already shows the rest of the message."""
    allow_images = SiteSettings.for_request(request).allow_external_media
    html = render_cached({message.pk: message.content}, allow_images=allow_images)[message.pk]
    return JsonResponse({"content_html": html, "version": message.version})


def render_messages(request, session: ChatSession, messages) -> SafeString:
    """The messages' HTML, one `chats/message.html` each, cached per message (chats/fragments.py)."""
    return fragments.render_messages(request, session, messages, prerender)


def page_fields() -> tuple | None:
    """The columns to read a page with for `render_rows`, or None to read model instances."""
    columns = fragments.columns()
    return None if columns is None else tuple(dict.fromkeys(("seq", *columns)))


def render_rows(request, session: ChatSession, rows: list[dict]) -> SafeString:
    """The HTML of a page read as rows (`page_fields()`): the messages whose HTML is cached are
    never loaded as model instances; the others are, in one query, and rendered."""

    def load(seqs: list[int]) -> list[Message]:
        found = {m.seq: m for m in paging.messages_by_seq(session, seqs)}
        return [found[seq] for seq in seqs if seq in found]

    return fragments.render_rows(request, session, rows, load, prerender)


def render_message(request, session: ChatSession, message: Message) -> str:
    return render_messages(request, session, [message])


def chosen_speaker(request, session: ChatSession):
    """The character the user picked to answer (group chats), if any, scoped to this chat."""
    code = request.POST.get("speaker", "")
    if not code or not session.is_group:
        return None
    member = session.members.select_related("character").filter(character__code=code).first()
    if member is None:
        raise Http404("No such character in this chat.")
    return member.character


def conflict() -> JsonResponse:
    return JsonResponse(
        {
            "error": "This message changed in another tab or window. Reload the chat to see the latest version."
        },
        status=409,
    )


def busy() -> JsonResponse:
    return JsonResponse(
        {"error": "A reply is still being written. Wait for it or stop it first."}, status=409
    )


def posted_version(request) -> int:
    try:
        return int(request.POST["version"])
    except (KeyError, ValueError):
        raise BadRequest("Give the version of the message you are changing.") from None


def generation_wait(request) -> int | None:
    """Count one generation for the user; seconds to wait when over the per-minute limit."""
    return services.generation_wait(user=request.user)


def too_fast(wait: int, *, what: str = "replies", setting: str = "GENERATIONS_PER_MINUTE") -> JsonResponse:
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
        if wait := generation_wait(request):
            return too_fast(wait)
        return view(request, *args, **kwargs)

    return wrapped


def engine_label(request, session: ChatSession) -> str:
    """The model this chat's next reply will come from (chats.profiles: cached, else one query)."""
    return profiles.resolved_label(
        user=request.user,
        character=session.character,
        chat_profile_id=session.profile_id,
        builtin=BUILTIN_LABEL,
    )


@once_per_request
def session_for_request(request, code) -> ChatSession:
    """get_session_for_user, once per request: the ETag and the view share it."""
    return get_session_for_user(request, code)


def int_param(request, name: str) -> int | None:
    try:
        return max(0, int(request.GET[name]))
    except (KeyError, ValueError):
        return None


def reply_stream_url(session: ChatSession, message: Message) -> str:
    # Not from the URL cache: every reply's is its own, and would push out the pages' URLs.
    return reverse("chats:message_stream", args=[session.code, message.seq])


def message_action(request, code, seq, action, respond=None) -> JsonResponse:
    """Run `action` on one of the user's messages; answer with `respond(request, session, message)`
    (by default the message's new HTML) or a readable error."""
    session, message = get_message_for_user(request, code, seq)
    try:
        message = action(message)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except services.ChatBusy:
        return busy()
    except services.EditConflict:
        return conflict()
    return (respond or message_response)(request, session, message)


def message_response(request, session: ChatSession, message: Message) -> JsonResponse:
    return JsonResponse(
        {
            "html": render_message(request, session, message),
            "stream_url": reply_stream_url(session, message) if message.is_streaming else "",
        }
    )


def edit_wait(request) -> int | None:
    """Count one edit for the user; seconds to wait when over the per-minute limit."""
    return ratelimit.hit("edit", str(request.user.pk), limit=settings.RPCHAT["EDITS_PER_MINUTE"], window=60)
