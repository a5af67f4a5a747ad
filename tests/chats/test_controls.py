"""The roleplay controls in the chat, through the real views, with the real engine where it answers."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chats import generation
from chats.models import ChatSession, Message, MessageAlternative, PromptSnapshot
from tests.factories import make_character, make_chat
from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.django_db(transaction=True)


def url(name, chat, seq=None):
    return reverse(f"chats:{name}", args=[chat.code] if seq is None else [chat.code, seq])


def wait(message: Message) -> Message:
    generation.wait_for(message.pk)
    message.refresh_from_db()
    return message


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Wren"), messages=4)


def test_regenerate_adds_a_swipe_and_the_old_one_stays_reachable(owner_client, chat, tiny_builtin):
    last = chat.messages.get(seq=4)
    assert owner_client.post(url("message_regenerate", chat, 4)).status_code == 200
    last = wait(last)
    assert (last.content, last.alternative_index, last.alternative_count) == (TINY_REPLY, 1, 2)
    assert list(MessageAlternative.objects.filter(message=last).values_list("content", flat=True)) == [
        "Message 4",
        TINY_REPLY,
    ]
    # Swiping back makes the first text the one the prompt uses.
    data = owner_client.post(url("message_swipe", chat, 4), {"index": 0, "version": last.version}).json()
    assert "Message 4" in data["html"] and "1/2" in data["html"]
    last.refresh_from_db()
    assert last.content == "Message 4"


def test_only_the_last_reply_can_be_regenerated(owner_client, chat, tiny_builtin):
    response = owner_client.post(url("message_regenerate", chat, 2))
    assert response.status_code == 400
    assert "Only the last reply" in response.json()["error"]


def test_continue_extends_the_last_reply(owner_client, chat, make_profile, tiny_engine_url):
    profile = make_profile(tiny_engine_url, max_tokens=3)
    owner_client.post(url("send", chat), {"content": "Hi"})
    reply = wait(chat.messages.get(seq=6))
    assert (reply.content, reply.finish_reason) == ("Hello, traveler", "length")
    page = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "hit the length limit" in page
    profile.max_tokens = 64
    profile.save()
    assert owner_client.post(url("message_continue", chat, 6)).status_code == 200
    reply = wait(reply)
    assert (reply.content, reply.status, reply.finish_reason) == (TINY_REPLY, "complete", "stop")


def test_impersonate_writes_the_users_turn_without_storing_it(owner_client, chat, tiny_builtin):
    response = owner_client.post(url("impersonate", chat))
    assert response.status_code == 200
    assert response.json()["text"] == TINY_REPLY
    assert chat.messages.count() == 4


def test_an_edit_from_a_stale_page_is_refused_with_409(owner_client, chat):
    message = chat.messages.get(seq=3)
    first = owner_client.post(
        url("message_edit", chat, 3), {"content": "Edited in tab A", "version": message.version}
    )
    assert first.status_code == 200
    assert first.json() == {"content_html": "<p>Edited in tab A</p>\n", "version": message.version + 1}
    stale = owner_client.post(
        url("message_edit", chat, 3), {"content": "Edited in tab B", "version": message.version}
    )
    assert stale.status_code == 409
    assert "changed in another tab" in stale.json()["error"]
    message.refresh_from_db()
    assert (message.content, message.version) == ("Edited in tab A", 2)


def test_editing_the_active_swipe_updates_that_swipe(owner_client, owner):
    character = make_character(first_message="Hi", alternate_greetings=["Hey"])
    owner_client.post(reverse("chats:new", args=[character.code]))
    chat = ChatSession.objects.get(user=owner)
    greeting = chat.messages.get()
    owner_client.post(url("message_edit", chat, 1), {"content": "Hi there", "version": greeting.version})
    assert MessageAlternative.objects.get(message=greeting, index=0).content == "Hi there"


def test_hide_keeps_the_message_but_leaves_it_out_of_the_prompt(owner_client, chat, tiny_builtin):
    message = chat.messages.get(seq=2)
    response = owner_client.post(url("message_hide", chat, 2), {"hidden": "1", "version": message.version})
    assert 'class="badge"' in response.json()["html"]
    owner_client.post(url("send", chat), {"content": "Next"})
    reply = wait(chat.messages.get(seq=6))
    sent = [m["content"] for m in PromptSnapshot.objects.get(message=reply).data["messages"]]
    assert "Message 2" not in sent and "Message 3" in sent
    assert chat.messages.filter(seq=2, hidden=True).exists()


def talk(client, chat, *contents: str) -> None:
    """Send each message through the chat page's view and wait for the model's reply to it."""
    for content in contents:
        response = client.post(url("send", chat), {"content": content})
        assert response.status_code == 200, response.content
        wait(chat.messages.get(seq=response.json()["reply_seq"]))


@pytest.fixture
def generated(owner, owner_client, tiny_builtin):
    """A chat made the way users make one: two messages, two replies written by the model (each
    with the prompt it was sent), and a second swipe of the last reply, shorter than the first."""
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    talk(owner_client, chat, "Message 1", "Message 3")
    tiny_builtin.builtin_max_tokens = 3
    tiny_builtin.save()
    assert owner_client.post(url("message_regenerate", chat, 4)).status_code == 200
    last = wait(chat.messages.get(seq=4))
    assert (last.content, last.alternative_count) == ("Hello, traveler", 2)
    assert PromptSnapshot.objects.filter(message__session=chat).count() == 2
    return chat


def test_delete_one_message_or_it_and_everything_after(owner_client, generated):
    chat = generated
    assert owner_client.post(url("message_delete", chat, 2)).json()["deleted"] == 1
    assert list(chat.messages.values_list("seq", flat=True).order_by("seq")) == [1, 3, 4]
    assert owner_client.post(url("message_delete", chat, 3), {"and_after": "1"}).json()["deleted"] == 2
    assert list(chat.messages.values_list("seq", flat=True)) == [1]
    chat.refresh_from_db()
    assert chat.message_count == 1
    # The replies' swipes and prompts went with them.
    assert not MessageAlternative.objects.exists()
    assert not PromptSnapshot.objects.exists()
    assert "Message 1" in owner_client.get(chat.get_absolute_url()).content.decode()


def test_deleting_the_only_reply_of_a_chat_leaves_the_chat_usable(owner_client, owner, tiny_builtin):
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    talk(owner_client, chat, "Hi")
    assert owner_client.post(url("message_delete", chat, 2)).json()["deleted"] == 1
    talk(owner_client, chat, "Hi again")
    assert list(chat.messages.values_list("content", flat=True)) == ["Hi", "Hi again", TINY_REPLY]


def test_branch_copies_the_history_up_to_a_message_and_links_back(owner_client, owner, generated):
    chat = generated
    data = owner_client.post(url("message_branch", chat, 4)).json()
    branch = ChatSession.objects.exclude(pk=chat.pk).get(user=owner)
    assert data["url"] == branch.get_absolute_url()
    assert (branch.parent_id, branch.branch_seq, branch.message_count, branch.last_seq) == (chat.pk, 4, 4, 4)
    assert list(branch.messages.values_list("content", flat=True).order_by("seq")) == [
        "Message 1",
        TINY_REPLY,
        "Message 3",
        "Hello, traveler",
    ]
    copied = branch.messages.get(seq=4)
    assert list(copied.alternatives.values_list("content", flat=True)) == [TINY_REPLY, "Hello, traveler"]
    page = owner_client.get(branch.get_absolute_url()).content.decode()
    assert "Branched from" in page and str(chat.code) in page
    # A copied reply's prompt inspector shows what was sent for it in the parent chat.
    prompt = owner_client.get(url("message_prompt", branch, 4)).content.decode()
    assert "Message 3" in prompt and "chat history (3 messages)" in prompt
    # The branch is independent: a change in it leaves the parent alone, and the other way round.
    owner_client.post(url("message_delete", branch, 1), {"and_after": "1"})
    assert chat.messages.count() == 4
    assert PromptSnapshot.objects.filter(message__session=chat).count() == 2
    assert owner_client.post(url("message_delete", chat, 2), {"and_after": "1"}).json()["deleted"] == 3
    talk(owner_client, branch, "A new start")
    assert branch.messages.count() == 2


def test_branching_copies_in_sql_at_any_length(owner, owner_client, django_assert_max_num_queries):
    chat = make_chat(user=owner, character=make_character(), messages=3000)
    with django_assert_max_num_queries(20):
        owner_client.post(url("message_branch", chat, 2500))
    assert ChatSession.objects.exclude(pk=chat.pk).get().messages.count() == 2500


def test_the_prompt_inspector_shows_what_was_sent(owner_client, chat, tiny_builtin):
    owner_client.post(url("send", chat), {"content": "Show me"})
    reply = wait(chat.messages.get(seq=6))
    html = owner_client.get(url("message_prompt", chat, 6)).content.decode()
    assert "built-in demo model (SmolLM2-135M)" in html
    assert "Show me" in html and "chat history (5 messages)" in html
    assert "max_tokens" in html
    assert reply.finish_reason == "stop"


def test_chat_settings_rename_persona_and_authors_note(owner_client, owner, chat, tiny_builtin):
    from settings_app.models import Persona

    persona = Persona.objects.create(user=owner, name="Captain Ada", description="A retired pilot.")
    response = owner_client.post(
        url("settings", chat),
        {
            "title": "The long night",
            "persona": persona.pk,
            "author_note": "[Mood: tense]",
            "author_note_depth": 0,
            "author_note_frequency": 1,
            "author_note_role": "system",
            "turn_strategy": "mention",
        },
    )
    assert response.status_code == 302
    page = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "The long night" in page and "Captain Ada" in page
    owner_client.post(url("send", chat), {"content": "Hello {{user}}"})
    reply = wait(chat.messages.get(seq=6))
    sent = PromptSnapshot.objects.get(message=reply).data["messages"]
    assert sent[-1] == {"role": "system", "content": "[Mood: tense]"}
    assert "About Captain Ada: A retired pilot." in sent[0]["content"]


def test_another_users_persona_cannot_be_chosen(owner_client, other, chat):
    from settings_app.models import Persona

    theirs = Persona.objects.create(user=other, name="Not yours")
    response = owner_client.post(
        url("settings", chat),
        {
            "title": "x",
            "persona": theirs.pk,
            "author_note_depth": 4,
            "author_note_frequency": 1,
            "author_note_role": "system",
            "turn_strategy": "mention",
        },
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


def test_archive_and_delete_a_chat(owner_client, chat):
    newest = Message.objects.filter(session=chat).order_by("-seq").first()
    listed = owner_client.get(reverse("chats:list")).content.decode()
    assert str(chat.code) in listed and newest.content[:40] in listed  # with its preview
    assert str(chat.code) not in owner_client.get(reverse("chats:list"), {"archived": "1"}).content.decode()
    owner_client.post(url("archive", chat), {"archived": "1"})
    assert str(chat.code) not in owner_client.get(reverse("chats:list")).content.decode()
    assert str(chat.code) in owner_client.get(reverse("chats:list"), {"archived": "1"}).content.decode()
    assert "Delete" in owner_client.get(url("delete", chat)).content.decode()
    owner_client.post(url("delete", chat))
    assert owner_client.get(chat.get_absolute_url()).status_code == 404
    assert Message.objects.filter(session=chat).count() == 4  # kept until pruned


def test_group_chat_speakers_by_mention_in_order_and_by_choice(owner_client, owner, tiny_builtin):
    wren = make_character(name="Wren")
    mira = make_character(name="Mira Vance")
    quince = make_character(name="Quince")
    chat = make_chat(user=owner, character=wren)
    for c in (mira, quince):
        owner_client.post(url("members", chat), {"action": "add", "character": c.pk})
    chat.refresh_from_db()
    assert chat.is_group and list(chat.members.values_list("character__name", flat=True)) == [
        "Wren",
        "Mira Vance",
        "Quince",
    ]

    def speak(**data):
        response = owner_client.post(url("send", chat), {"content": "Hello", **data})
        assert response.status_code == 200, response.content
        reply = wait(chat.messages.get(seq=response.json()["reply_seq"]))
        return reply.speaker

    assert speak(content="Quince, what do you think?") == "Quince"
    assert speak() == "Wren"  # no mention: the next in list order after Quince
    assert speak() == "Mira Vance"
    assert speak(speaker=str(quince.code)) == "Quince"
    owner_client.post(url("members", chat), {"action": "mute", "character_id": wren.pk})
    assert speak() == "Mira Vance"  # Wren is muted and skipped
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "Next speaker: automatic" in html and "Wren (muted)" in html


def test_a_user_cannot_pick_a_speaker_from_outside_the_chat(owner_client, owner):
    chat = make_chat(user=owner, character=make_character())
    owner_client.post(url("members", chat), {"action": "add", "character": make_character().pk})
    stranger = make_character(name="Stranger")
    assert (
        owner_client.post(url("send", chat), {"content": "Hi", "speaker": str(stranger.code)}).status_code
        == 404
    )


def test_controls_are_scoped_to_the_owner(client, other, chat):
    client.force_login(other)
    for name in (
        "message_edit",
        "message_hide",
        "message_delete",
        "message_branch",
        "message_regenerate",
        "message_continue",
    ):
        assert client.post(url(name, chat, 4), {"content": "x", "version": 1}).status_code == 404, name
    for name in ("message_source", "message_prompt"):
        assert client.get(url(name, chat, 4)).status_code == 404, name
    for name in ("settings", "delete"):
        assert client.get(url(name, chat)).status_code == 404, name
    for name in ("reply", "impersonate", "members", "archive", "delete"):
        assert client.post(url(name, chat), {"action": "add"}).status_code in (404,), name
    assert chat.messages.count() == 4
