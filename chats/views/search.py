"""Search of the user's messages and of the characters they may see."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from characters.search import search_characters

from ..http import (
    get_session_for_user,
    int_param,
)
from ..search import search_messages


@login_required
@require_GET
def search(request):
    """Search the user's messages and the characters they may see."""
    query = request.GET.get("q", "").strip()[:200]
    before = int_param(request, "before")
    chat = None
    if chat_code := request.GET.get("chat"):
        try:
            chat = get_session_for_user(request, chat_code)
        except ValidationError:
            raise Http404("No such chat.") from None
    results = search_messages(user=request.user, query=query, session=chat, before=before)
    characters = [] if before or chat else search_characters(user=request.user, query=query, limit=8)
    return render(
        request,
        "chats/search.html",
        {"q": query, "search_q": query, "results": results, "characters": characters, "chat": chat},
    )
