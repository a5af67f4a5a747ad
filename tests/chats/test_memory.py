"""Long-term memory: summaries written by the real background worker with the tiny model, stale
marking and rewrites, failures and catch-up, branches, group witnesses, pinning, the pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from chats import generation, memory, services
from chats.models import ChatMemory, Memory, Message, PinnedFact, PromptSnapshot
from chats.prompt import build_prompt
from settings_app.models import ConnectionProfile, SiteSettings
from tests.factories import add_messages, make_character, make_chat
from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.django_db(transaction=True)

FACT = "The smith Zorvath Quellin keeps the vault key; its number is 7341."


def run_worker() -> None:
    """The real worker (django-tasks-db's db_worker), until the queue has nothing ready."""
    call_command(
        "db_worker", "--batch", "--no-startup-delay", "--queue-name", "*", "--no-reload", verbosity=0
    )


def send(client, chat, content: str) -> Message:
    response = client.post(reverse("chats:send", args=[chat.code]), {"content": content})
    assert response.status_code == 200, response.content
    reply = chat.messages.get(seq=response.json()["reply_seq"])
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    return reply


def sent_prompt(reply: Message) -> str:
    data = PromptSnapshot.objects.get(message=reply).data
    return "\n".join(m["content"] for m in data["messages"])


@pytest.fixture
def small_context(tiny_engine_url, make_profile):
    """The tiny model with a 400-token context: a few dozen messages already overflow it."""
    return make_profile(tiny_engine_url, name="tiny", context_size=400, max_tokens=64)


@pytest.fixture
def long_chat(owner):
    # 120 old messages of about 20 tokens: far more than a 512-token context holds.
    return make_chat(
        user=owner,
        character=make_character(name="Wren", description=""),
        messages=120,
        text="Line {seq}: the caravan rolls on past the hills and the rivers.",
    )


def test_summaries_are_written_in_the_background_by_the_worker(owner_client, long_chat, small_context):
    reply = send(owner_client, long_chat, "Tell me more.")
    assert reply.status == Message.Status.COMPLETE  # the reply never waited for a summary
    assert not Memory.objects.filter(session=long_chat, status="written").exists()  # not in the request
    assert DBTaskResult.objects.filter(task_path="chats.tasks.write_summaries", status="READY").exists()
    window = PromptSnapshot.objects.get(message=reply).data["history_included"]
    run_worker()
    written = list(Memory.objects.filter(session=long_chat).order_by("start_seq"))
    # Every whole stretch of 20 before the window, aligned on seq, none reaching into it.
    assert [(m.start_seq, m.end_seq) for m in written][:3] == [(1, 20), (21, 40), (41, 60)]
    newest_in_window = long_chat.messages.order_by("-seq").first().seq
    assert written[-1].end_seq < newest_in_window - window + 1
    assert all(m.text == TINY_REPLY and m.status == "written" and not m.stale for m in written)


def test_an_edit_inside_a_summarized_stretch_marks_it_stale_and_the_worker_rewrites_it(
    owner_client, long_chat, small_context
):
    send(owner_client, long_chat, "Tell me more.")
    run_worker()
    first = Memory.objects.get(session=long_chat, start_seq=1)
    message = long_chat.messages.get(seq=5)
    response = owner_client.post(
        reverse("chats:message_edit", args=[long_chat.code, 5]),
        {"content": "Changed.", "version": message.version},
    )
    assert response.status_code == 200
    first.refresh_from_db()
    assert first.stale
    assert not Memory.objects.get(session=long_chat, start_seq=21).stale  # only the stretch it is in
    # A stale summary stays out of prompts until it is rewritten.
    block = memory.recall(
        session=long_chat,
        character=long_chat.character,
        settings=memory.memory_settings(long_chat),
        facts=[],
        limit=10_000,
        newest=["caravan hills"],
        window_seq=100,
        window_id=long_chat.messages.get(seq=100).pk,
    )
    assert all(i.start_seq != 1 for i in block.items if i.kind == "summary")
    run_worker()
    first.refresh_from_db()
    assert not first.stale and first.text == TINY_REPLY
    assert first.source_version == memory.fingerprint(long_chat.pk, 1, 20)


@pytest.mark.parametrize("action", ["hide", "delete", "swipe"])
def test_hide_delete_and_swipe_mark_the_summary_stale(owner_client, long_chat, small_context, action):
    send(owner_client, long_chat, "Tell me more.")
    run_worker()
    message = long_chat.messages.get(seq=24)
    if action == "hide":
        url, data = "chats:message_hide", {"hidden": "1", "version": message.version}
    elif action == "delete":
        url, data = "chats:message_delete", {}
    else:
        services.reply_regenerate  # noqa: B018 - swipes of an old message come from an import
        from chats.models import MessageAlternative

        MessageAlternative.objects.bulk_create(
            [
                MessageAlternative(message=message, index=0, content=message.content),
                MessageAlternative(message=message, index=1, content="Another take."),
            ]
        )
        Message.objects.filter(pk=message.pk).update(alternative_count=2)
        message.refresh_from_db()
        url, data = "chats:message_swipe", {"index": 1, "version": message.version}
    assert owner_client.post(reverse(url, args=[long_chat.code, 24]), data).status_code == 200
    assert Memory.objects.get(session=long_chat, start_seq=21).stale
    assert not Memory.objects.get(session=long_chat, start_seq=1).stale


def test_an_engine_that_is_down_fails_the_summary_which_is_retried_later(
    owner, owner_client, long_chat, small_context, scripted_server, make_profile
):
    reply = send(owner_client, long_chat, "Tell me more.")
    profile = make_profile(scripted_server.url, name="summarizer")
    site = SiteSettings.load()
    site.active_profile = small_context  # replies stay on the tiny model; summaries go to `profile`
    site.save()
    # Offered to users by staff, so the chat may have its summaries written by it.
    ConnectionProfile.objects.filter(pk=profile.pk).update(available_to_all=True)
    ChatMemory.objects.filter(session=long_chat).update(profile=profile)
    scripted_server.mode = "http503"
    run_worker()
    failed = Memory.objects.get(session=long_chat)  # the newest stretch is tried first; the rest wait
    assert failed.status == "failed" and failed.attempts == 1 and "503" in failed.error
    retry = DBTaskResult.objects.filter(status="READY", task_path="chats.tasks.write_summaries").get()
    assert retry.run_after > timezone.now()  # later, not in a loop
    # Replies go on meanwhile.
    assert send(owner_client, long_chat, "And then?").status == Message.Status.COMPLETE
    assert reply.status == Message.Status.COMPLETE
    # The engine is back; the retry comes due and catches up.
    scripted_server.mode = "ok"
    DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now() - timedelta(seconds=1))
    run_worker()
    failed.refresh_from_db()
    assert failed.status == "written" and failed.text == "Once upon a time"
    assert not Memory.objects.filter(session=long_chat).exclude(status="written").exists()


def test_a_branch_keeps_the_memories_before_its_branch_point_and_builds_its_own(
    owner_client, long_chat, small_context
):
    send(owner_client, long_chat, "Tell me more.")
    run_worker()
    PinnedFact.objects.create(session=long_chat, text="pinned late", seq=110)
    memory.add_fact(session=long_chat, text="written by hand")
    branch = services.chat_branch(session=long_chat, at_seq=50)
    kept = list(Memory.objects.filter(session=branch).values_list("start_seq", "end_seq"))
    assert kept == [(1, 20), (21, 40)]  # 41-60 reaches past the branch point
    assert set(branch.facts.values_list("text", flat=True)) == {"written by hand"}
    add_messages(branch, 60, text="Branch line {seq}: a different road through the marsh.")
    send(owner_client, branch, "Go on.")
    run_worker()
    starts = list(Memory.objects.filter(session=branch).values_list("start_seq", flat=True))
    assert starts[:3] == [1, 21, 41]
    assert Memory.objects.get(session=branch, start_seq=41).text == TINY_REPLY


def test_a_group_character_recalls_only_what_it_witnessed(owner):
    ada = make_character(name="Ada", description="")
    bo = make_character(name="Bo", description="")
    chat = make_chat(user=owner, character=ada, messages=2)
    services.member_add(session=chat, character=bo)
    services.member_set_muted(session=chat, character_id=bo.pk, muted=True)
    add_messages(chat, 1, text="Secret: the password is Quillfeather 9912.")  # Bo is muted
    services.member_set_muted(session=chat, character_id=bo.pk, muted=False)
    add_messages(chat, 1, text="Public: the gate opens at Quillfeather tower.")
    add_messages(chat, 300, text="Filler {seq} about the weather and the road.")
    add_messages(chat, 1, text="What about Quillfeather and 9912?")

    def recalled_for(character):
        prompt = build_prompt(
            session=chat,
            character=character,
            user_name="olivia",
            persona_description="",
            site=SiteSettings.load(),
            context_size=600,
            reply_tokens=100,
            before_seq=chat.last_seq + 1,
            members=[ada, bo],
        )
        return [i for i in prompt.memory["items"] if i["kind"] == "message"]

    ada_items = {i["start_seq"] for i in recalled_for(ada)}
    bo_items = {i["start_seq"] for i in recalled_for(bo)}
    assert ada_items == {3, 4}
    assert bo_items == {4}  # the secret was said while Bo was muted


def test_pin_a_message_in_one_click_and_see_it_in_every_prompt(owner, owner_client):
    chat = make_chat(user=owner, character=make_character(name="Wren", description=""), messages=4)
    response = owner_client.post(reverse("chats:message_pin", args=[chat.code, 3]))
    assert response.status_code == 302 and response["Location"].endswith("?at=3#m3")
    fact = chat.facts.get()
    assert fact.text == "olivia: Message 3" and fact.seq == 3
    prompt = build_prompt(
        session=chat,
        character=chat.character,
        user_name="olivia",
        persona_description="",
        site=SiteSettings.load(),
        context_size=2048,
        reply_tokens=100,
        before_seq=chat.last_seq + 1,
    )
    assert prompt.messages[0]["content"].endswith("\n\n[Memory]\nFacts to keep in mind:\n- olivia: Message 3")
    assert [m["content"] for m in prompt.messages[1:]] == [f"Message {n}" for n in range(1, 5)]
    assert prompt.memory["items"][0]["why"] == "pinned"
    # Memory off: nothing of it in the prompt.
    owner_client.post(reverse("chats:memory", args=[chat.code]), {"share": 20})  # enabled unticked
    assert not ChatMemory.objects.get(session=chat).enabled
    off = build_prompt(
        session=chat,
        character=chat.character,
        user_name="olivia",
        persona_description="",
        site=SiteSettings.load(),
        context_size=2048,
        reply_tokens=100,
        before_seq=chat.last_seq + 1,
    )
    assert all("[Memory]" not in m["content"] for m in off.messages)


def test_the_memory_page_edits_facts_and_summaries_and_refuses_stale_edits(owner, owner_client, other):
    chat = make_chat(user=owner, character=make_character(name="Wren"), messages=4)
    owner_client.post(reverse("chats:fact_add", args=[chat.code]), {"text": "Wren fears boats."})
    fact = chat.facts.get()
    summary = Memory.objects.create(session=chat, start_seq=1, end_seq=20, text="Old.", status="written")
    page = owner_client.get(reverse("chats:memory", args=[chat.code]))
    assert b"Wren fears boats." in page.content and b"Messages 1\xe2\x80\x9320" in page.content
    assert b"?at=1#m1" in page.content  # the summary links to its messages
    edit = reverse("chats:summary_edit", args=[chat.code, summary.pk])
    owner_client.post(edit, {"text": "Wren met Olivia.", "version": summary.version})
    summary.refresh_from_db()
    assert summary.text == "Wren met Olivia." and summary.edited
    stale = owner_client.post(edit, {"text": "Lost edit.", "version": 1}, follow=True)
    assert b"changed since the page was loaded" in stale.content
    summary.refresh_from_db()
    assert summary.text == "Wren met Olivia."
    empty = owner_client.post(reverse("chats:fact_add", args=[chat.code]), {"text": "  "})
    assert empty.status_code == 400 and b"This field is required." in empty.content
    # Another user's chat memory does not exist for them.
    from django.test import Client

    intruder = Client()
    intruder.force_login(other)
    assert intruder.get(reverse("chats:memory", args=[chat.code])).status_code == 404
    assert intruder.post(reverse("chats:fact_delete", args=[chat.code, fact.pk])).status_code == 404
    owner_client.post(reverse("chats:fact_delete", args=[chat.code, fact.pk]))
    assert not chat.facts.exists()
    panel = owner_client.get(reverse("chats:memory_panel", args=[chat.code]))
    assert b"Wren met Olivia." in panel.content
    # Deleting a summary takes it out of prompts and queues a fresh one.
    owner_client.post(reverse("chats:summary_delete", args=[chat.code, summary.pk]))
    summary.refresh_from_db()
    assert summary.status == "pending" and summary.text == ""
    assert DBTaskResult.objects.filter(task_path="chats.tasks.write_summaries", status="READY").exists()


def test_memory_queries_stay_constant_as_the_chat_grows(owner, django_assert_num_queries):
    character = make_character(description="")
    small = make_chat(user=owner, character=character, messages=100, text="Line {seq}")
    big = make_chat(user=owner, character=character, messages=20_000, text="Line {seq}")
    for chat in (small, big):
        add_messages(chat, 1, text="Do you remember line 15?")
        memory.add_fact(session=chat, text="A fact.")
        Memory.objects.create(session=chat, start_seq=1, end_seq=20, text="Summary.", status="written")
    SiteSettings.load()

    def build(chat):
        return build_prompt(
            session=chat,
            character=character,
            user_name="olivia",
            persona_description="",
            site=SiteSettings.load(),
            context_size=400,
            reply_tokens=100,
            before_seq=chat.last_seq + 1,
        )

    # history, lore, memory settings with the facts, the read of older messages matching the newest
    # words (scanned in the short chat, the full-text index in the long one) with their summaries
    for chat in (small, big):
        with django_assert_num_queries(4):
            prompt = build(chat)
        sent = {(i["kind"], i["start_seq"]) for i in prompt.memory["items"] if i["included"]}
        assert sent == {("fact", None), ("message", 15), ("summary", 1)}


def test_a_reply_with_a_pinned_fact_is_saved_with_its_prompt(owner, owner_client, tiny_builtin):
    chat = make_chat(user=owner, character=make_character(name="Wren", description=""), messages=2)
    owner_client.post(reverse("chats:fact_add", args=[chat.code]), {"text": "Wren owes Olivia a song."})
    reply = send(owner_client, chat, "Hello.")
    assert reply.status == Message.Status.COMPLETE, reply.error
    data = PromptSnapshot.objects.get(message=reply).data
    assert "Wren owes Olivia a song." in data["messages"][0]["content"]
    assert data["memory"]["items"][0]["why"] == "pinned"
    page = owner_client.get(reverse("chats:message_prompt", args=[chat.code, reply.seq]))
    assert b"Pinned fact" in page.content and b'id="memory-inspector"' in page.content


def test_summaries_are_written_newest_first_and_only_for_a_bounded_backlog(owner):
    chat = make_chat(user=owner, character=make_character(), messages=0)
    mem = ChatMemory.objects.create(session=chat, window_start=memory.BACKLOG * memory.STRETCH * 3)
    todo = memory._work(chat.pk, mem)
    target = mem.window_start - 1 - (mem.window_start - 1) % memory.STRETCH
    assert todo[0] == (target - memory.STRETCH + 1, target)  # just out of the window
    assert [start for start, _ in todo] == sorted((start for start, _ in todo), reverse=True)
    Memory.objects.create(
        session=chat, start_seq=target - memory.STRETCH + 1, end_seq=target, status="written"
    )
    assert memory._work(chat.pk, mem)[0] == (target - 2 * memory.STRETCH + 1, target - memory.STRETCH)
    lowest = target - memory.BACKLOG * memory.STRETCH + 1
    Memory.objects.bulk_create(
        Memory(session=chat, start_seq=start, end_seq=start + memory.STRETCH - 1, status="written")
        for start in range(lowest, target - memory.STRETCH + 1, memory.STRETCH)
    )
    assert memory._work(chat.pk, mem) == []  # older stretches are recalled as messages only


def test_a_short_chat_is_scanned_with_the_same_result_as_the_full_text_index(owner, monkeypatch):
    texts = ["The Lantern of Quill", "quill-pen and lantern", "SILVER lantern", "Lanterns", "nothing here"]
    chat = make_chat(user=owner, character=make_character(), messages=0)
    for i in range(60):
        add_messages(chat, 1, text=texts[i % len(texts)] + f" {i}")
    words = ["lantern", "quill", "silver"]
    last = chat.messages.get(seq=55)
    scanned = memory._candidates(chat.pk, words, before_id=last.pk, before_seq=last.seq)
    monkeypatch.setattr(memory, "SCAN_BELOW", 0)
    indexed = memory._candidates(chat.pk, words, before_id=last.pk, before_seq=last.seq)
    assert sorted(r[:3] for r in scanned) == sorted(r[:3] for r in indexed)
    assert {r[0] for r in scanned} == {0, 1, 2}  # any case; "Lanterns" is another word


def test_the_words_looked_up_are_names_and_numbers_first_and_never_huge():
    words = memory.query_words(
        [
            "Do you remember what Zorvath told us about the code 7341? " + "x" * 500 + " " + "9" * 500,
            "The lantern flickers. Whispers fill the Tavern of Mira.",
        ]
    )
    # Numbers, then names (the newest message's first), then other words, longest first;
    # sentence-initial capitals are not names, stop words and huge runs are left out.
    assert words == ["7341", "zorvath", "tavern", "mira", "remember", "code"]


def test_a_task_is_queued_once_per_stretch_that_falls_out_of_the_window(owner):
    chat = make_chat(user=owner, character=make_character(), messages=0)
    assert not memory.schedule(chat.pk, window_start=15)  # nothing whole before it yet
    assert memory.schedule(chat.pk, window_start=45)  # 1-20 and 21-40
    assert not memory.schedule(chat.pk, window_start=47)  # the window moved, no new stretch
    assert memory.schedule(chat.pk, window_start=61)  # 41-60
    assert DBTaskResult.objects.filter(task_path="chats.tasks.write_summaries").count() == 2
    ChatMemory.objects.filter(session=chat).update(enabled=False)
    assert not memory.schedule(chat.pk, window_start=200)  # memory off: nothing is written


def test_a_summary_corrected_by_hand_is_never_rewritten_over_the_users_words(
    owner_client, long_chat, small_context
):
    send(owner_client, long_chat, "Tell me more.")
    run_worker()
    first = Memory.objects.get(session=long_chat, start_seq=1)
    edit = reverse("chats:summary_edit", args=[long_chat.code, first.pk])
    mine = "The caravan left Ostrava with the twins; Mara carries the map."
    assert owner_client.post(edit, {"text": mine, "version": first.version}).status_code == 302
    message = long_chat.messages.get(seq=5)
    owner_client.post(
        reverse("chats:message_edit", args=[long_chat.code, 5]),
        {"content": "Changed.", "version": message.version},
    )
    run_worker()
    first.refresh_from_db()
    # Stale (out of prompts), the user's text kept, and the page says what to do.
    assert first.stale and first.text == mine
    page = owner_client.get(reverse("chats:memory", args=[long_chat.code])).content.decode()
    assert "you corrected it; save it again to keep it" in page
    assert owner_client.post(edit, {"text": mine, "version": first.version}).status_code == 302
    first.refresh_from_db()
    assert not first.stale and first.text == mine


def test_summaries_can_only_be_written_by_a_model_the_user_may_use(owner, other, owner_client):
    from settings_app.models import ConnectionProfile, SiteSettings

    site = SiteSettings.load()
    site.allow_user_profiles = True
    site.user_profile_hosts = "models.example.com"
    site.save()
    theirs = ConnectionProfile.objects.create(
        owner=other,
        name="Other's server",
        base_url="https://models.example.com/v1",
        model="m",
        api_key="their-key",
    )
    offered = ConnectionProfile.objects.create(
        name="Offered", base_url="https://models.example.com/v1", model="m", available_to_all=True
    )
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    url = reverse("chats:memory", args=[chat.code])
    page = owner_client.get(url).content.decode()
    assert "Offered" in page and "Other&#x27;s server" not in page and "Other's server" not in page
    response = owner_client.post(url, {"enabled": "on", "share": 20, "profile": theirs.pk})
    assert response.status_code == 400
    assert memory.memory_settings(chat).profile_id is None
    owner_client.post(url, {"enabled": "on", "share": 20, "profile": offered.pk})
    assert memory.memory_settings(chat).profile_id == offered.pk
    # Withdrawn by staff after it was chosen: summaries fall back to the instance's engine.
    ConnectionProfile.objects.filter(pk=offered.pk).update(available_to_all=False)
    config = memory.engine_for(memory.memory_settings(chat))
    assert "models.example.com" not in str(getattr(config, "base_url", ""))
