"""The chat's memory: its page (settings, pinned facts, summaries), and pinning a message."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import F
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.pagination import page_number, page_of
from core.tokens import estimate_tokens

from .. import memory
from ..http import get_message_for_user, get_session_for_user
from ..memory_forms import FactForm, MemorySettingsForm, SummaryForm
from ..models import ChatMemory, Memory, PinnedFact

SUMMARIES_PER_PAGE = 25


def _back(request, session):
    """Back to the chat (the panel's forms) or to the memory page."""
    if request.POST.get("back") == "chat":
        return redirect(session)
    return redirect("chats:memory", code=session.code)


def _errors(form) -> str:
    return " ".join(e for errors in form.errors.values() for e in errors)


def _page(request, session, *, settings_form=None, fact_form=None, edit_errors=None, status=200):
    mem = ChatMemory.objects.filter(session=session).first() or ChatMemory(session=session)
    summaries = page_of(
        Memory.objects.filter(session=session)
        .only(
            "id",
            "start_seq",
            "end_seq",
            "text",
            "token_count",
            "status",
            "stale",
            "edited",
            "error",
            "version",
        )
        .order_by("-start_seq"),
        number=page_number(request),
        per_page=SUMMARIES_PER_PAGE,
    )
    return render(
        request,
        "chats/memory/page.html",
        {
            "session": session,
            "settings_form": settings_form or MemorySettingsForm(instance=mem, user=request.user),
            "fact_form": fact_form or FactForm(),
            "facts": PinnedFact.objects.filter(session=session)[:200],
            "summaries": summaries,
            "edit_errors": edit_errors or {},
        },
        status=status,
    )


@login_required
def memory_page(request, code):
    session = get_session_for_user(request, code)
    if request.method == "POST":
        mem = ChatMemory.objects.filter(session=session).first() or ChatMemory(session=session)
        form = MemorySettingsForm(request.POST, instance=mem, user=request.user)
        if form.is_valid():
            form.save()
            messages.success(request, "Memory settings saved.")
            return redirect("chats:memory", code=session.code)
        return _page(request, session, settings_form=form, status=400)
    return _page(request, session)


PANEL_FACTS = 20
PANEL_SUMMARIES = 5


@login_required
@require_GET
def memory_panel(request, code):
    """The chat page's memory panel (fetched when opened): settings, facts, newest summaries."""
    session = get_session_for_user(request, code)
    facts = list(PinnedFact.objects.filter(session=session).only("id", "text", "seq")[: PANEL_FACTS + 1])
    summaries = list(
        Memory.objects.filter(session=session)
        .only("id", "start_seq", "end_seq", "text", "stale", "edited", "status")
        .order_by("-start_seq")[:PANEL_SUMMARIES]
    )
    return render(
        request,
        "chats/memory/panel_body.html",
        {
            "session": session,
            "memory": memory.memory_settings(session),
            "facts": facts[:PANEL_FACTS],
            "more_facts": len(facts) > PANEL_FACTS,
            "summaries": summaries,
        },
    )


@login_required
@require_POST
def fact_add(request, code):
    session = get_session_for_user(request, code)
    form = FactForm(request.POST)
    if form.is_valid():
        try:
            memory.add_fact(session=session, text=form.cleaned_data["text"])
        except ValueError as exc:
            form.add_error("text", str(exc))
    if not form.is_valid():
        if request.POST.get("back") == "chat":
            messages.error(request, _errors(form))
            return redirect(session)
        return _page(request, session, fact_form=form, status=400)
    messages.success(request, "Fact pinned.")
    return _back(request, session)


@login_required
@require_POST
def fact_edit(request, code, fact_id):
    session = get_session_for_user(request, code)
    fact = get_object_or_404(PinnedFact, session=session, pk=fact_id)
    form = FactForm(request.POST)
    if not form.is_valid():
        return _page(request, session, edit_errors={"fact": fact.pk, "errors": _errors(form)}, status=400)
    text = form.cleaned_data["text"]
    updated = PinnedFact.objects.filter(pk=fact.pk, version=form.cleaned_data["version"] or 0).update(
        text=text, token_count=estimate_tokens(text), version=F("version") + 1
    )
    if not updated:
        messages.error(request, "This fact changed in another tab or window; your edit was not applied.")
        return redirect("chats:memory", code=session.code)
    messages.success(request, "Fact saved.")
    return _back(request, session)


@login_required
@require_POST
def fact_delete(request, code, fact_id):
    session = get_session_for_user(request, code)
    get_object_or_404(PinnedFact, session=session, pk=fact_id).delete()
    messages.success(request, "Fact unpinned.")
    return _back(request, session)


@login_required
@require_POST
def summary_edit(request, code, memory_id):
    session = get_session_for_user(request, code)
    summary = get_object_or_404(Memory, session=session, pk=memory_id)
    form = SummaryForm(request.POST)
    if not form.is_valid():
        return _page(
            request, session, edit_errors={"summary": summary.pk, "errors": _errors(form)}, status=400
        )
    text = form.cleaned_data["text"]
    updated = Memory.objects.filter(pk=summary.pk, version=form.cleaned_data["version"]).update(
        text=text,
        token_count=estimate_tokens(text),
        status=Memory.Status.WRITTEN,
        stale=False,
        edited=True,
        error="",
        source_version=memory.fingerprint(session.pk, summary.start_seq, summary.end_seq),
        version=F("version") + 1,
    )
    if not updated:
        messages.error(
            request, "This summary changed since the page was loaded (rewritten or edited); reload it."
        )
        return redirect("chats:memory", code=session.code)
    messages.success(request, f"Summary of messages {summary.start_seq}–{summary.end_seq} saved.")
    return _back(request, session)


@login_required
@require_POST
def summary_delete(request, code, memory_id):
    """Throw a summary away: it leaves prompts at once and the worker writes it afresh."""
    session = get_session_for_user(request, code)
    summary = get_object_or_404(Memory, session=session, pk=memory_id)
    with transaction.atomic():
        Memory.objects.filter(pk=summary.pk).update(
            text="",
            token_count=0,
            status=Memory.Status.PENDING,
            stale=False,
            edited=False,
            version=F("version") + 1,
        )
        transaction.on_commit(lambda: memory.enqueue(session.pk))
    messages.success(
        request,
        f"Summary of messages {summary.start_seq}–{summary.end_seq} deleted; a new one will be written.",
    )
    return _back(request, session)


@login_required
@require_POST
def message_pin(request, code, seq):
    """Pin a message as a fact, in one click from its menu."""
    session, message = get_message_for_user(request, code, seq)
    try:
        memory.pin_message(session=session, message=message)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Message #{seq} pinned as a fact.")
    return redirect(reverse("chats:detail", args=[session.code]) + f"?at={seq}#m{seq}")
