"""Trash: deleted chats and characters the user can still restore."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from characters.models import Character

from .. import services
from ..models import ChatSession


@login_required
@require_GET
def trash(request):
    """Deleted chats and characters the user can still restore."""

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
