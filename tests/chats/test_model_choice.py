"""A model per chat, per character and per user, among the profiles staff offer: the order the
choices apply in, that a user can pick only what is offered to them, and that each reply names
the model that wrote it (the message's model line, the prompt inspector)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from chats import generation
from chats.models import CharacterModelDefault, ChatSession, Message
from chats.profiles import resolve_profile
from settings_app.models import ConnectionProfile, ModelDefault, SiteSettings
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db(transaction=True)


def offer(url: str, name: str, model: str, **fields) -> ConnectionProfile:
    """A profile staff made, offered to everyone unless said otherwise."""
    fields.setdefault("available_to_all", True)
    fields.setdefault("max_tokens", 32)
    return ConnectionProfile.objects.create(name=name, base_url=url, model=model, **fields)


def make_active(profile: ConnectionProfile | None) -> None:
    site = SiteSettings.load()
    site.active_profile = profile
    site.save()


def chat_settings(client, chat: ChatSession, **fields) -> str:
    data = {
        "title": chat.title,
        "author_note_depth": 4,
        "author_note_frequency": 1,
        "author_note_role": "system",
        "turn_strategy": "mention",
        **fields,
    }
    response = client.post(reverse("chats:settings", args=[chat.code]), data)
    return response.content.decode() if response.status_code == 200 else ""


def send_and_finish(client, chat: ChatSession, content: str = "Hello there") -> Message:
    response = client.post(reverse("chats:send", args=[chat.code]), {"content": content})
    assert response.status_code == 200, response.content
    reply = chat.messages.order_by("-seq").first()
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    return reply


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Wren"))


@pytest.fixture
def four(scripted_server):
    """Four profiles on the scripted server, told apart by the model name each sends."""
    return {
        name: offer(scripted_server.url, name.title(), f"model-{name}")
        for name in ("site", "user", "character", "chat")
    }


def used_model(server) -> str:
    return server.requests[-1]["model"]


def test_the_chat_beats_the_character_default_beats_the_user_default_beats_the_site(
    owner, owner_client, chat, four, scripted_server
):
    make_active(four["site"])
    # Each set through the page a user sets it on.
    owner_client.post(reverse("settings_app:models"), {"profile": four["user"].code})
    chat_settings(owner_client, chat, profile=four["chat"].code, character_default=four["character"].code)
    assert ModelDefault.objects.get(user=owner).profile == four["user"]
    assert (
        CharacterModelDefault.objects.get(user=owner, character=chat.character).profile == four["character"]
    )

    def resolved():
        chat.refresh_from_db()
        return resolve_profile(user=owner, character=chat.character, chat_profile_id=chat.profile_id)

    assert (resolved().profile, resolved().source) == (four["chat"], "this chat's choice")
    reply = send_and_finish(owner_client, chat)
    assert used_model(scripted_server) == "model-chat"
    assert reply.model_label == "model-chat (Chat)"

    chat_settings(owner_client, chat, profile="", character_default=four["character"].code)
    assert (resolved().profile, resolved().source) == (four["character"], "your default for this character")
    send_and_finish(owner_client, chat)
    assert used_model(scripted_server) == "model-character"

    chat_settings(owner_client, chat, profile="", character_default="")
    assert (resolved().profile, resolved().source) == (four["user"], "your default")
    send_and_finish(owner_client, chat)
    assert used_model(scripted_server) == "model-user"

    owner_client.post(reverse("settings_app:models"), {"profile": ""})
    assert (resolved().profile, resolved().source) == (four["site"], "the site's default")
    send_and_finish(owner_client, chat)
    assert used_model(scripted_server) == "model-site"

    make_active(None)
    assert resolved().profile is None  # the built-in model


def test_a_character_default_is_the_users_own_and_applies_to_their_other_chats_with_it(
    owner, other, owner_client, client, chat, four
):
    chat_settings(owner_client, chat, character_default=four["character"].code)
    second = make_chat(user=owner, character=chat.character)
    assert (
        resolve_profile(user=owner, character=chat.character, chat_profile_id=None).profile
        == four["character"]
    )
    assert (
        resolve_profile(user=owner, character=second.character, chat_profile_id=None).profile
        == four["character"]
    )
    # Another user chatting with the same (public) character is not affected.
    assert resolve_profile(user=other, character=chat.character, chat_profile_id=None).profile is None
    # Nor is the shared character row.
    chat.character.refresh_from_db()
    assert "profile" not in str(chat.character.extensions)


def test_another_users_own_profile_cannot_be_picked_and_nothing_else_is_saved(
    owner, other, owner_client, chat, scripted_server
):
    site = SiteSettings.load()
    site.allow_user_profiles = True
    site.user_profile_hosts = "127.0.0.1"
    site.save()
    theirs = ConnectionProfile.objects.create(
        owner=other, name="Theirs", base_url=scripted_server.url, model="x"
    )
    html = chat_settings(owner_client, chat, title="A new title", profile=theirs.code)
    assert "That model is not available to you. Pick one from the list." in html
    chat.refresh_from_db()
    assert chat.profile_id is None and chat.title != "A new title"
    # What was typed is still in the form.
    assert 'value="A new title"' in html
    # As a default for the character or for the user, the same.
    html = chat_settings(owner_client, chat, character_default=theirs.code)
    assert "That model is not available to you" in html
    assert not CharacterModelDefault.objects.exists()
    response = owner_client.post(reverse("settings_app:models"), {"profile": theirs.code})
    assert response.status_code == 400
    assert "That model is not available to you" in response.content.decode()
    assert not ModelDefault.objects.exists()
    # Nor is it listed for them.
    assert "Theirs" not in owner_client.get(reverse("chats:settings", args=[chat.code])).content.decode()


@pytest.mark.parametrize("posted", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "1"])
def test_a_made_up_profile_is_refused_plainly(owner_client, chat, posted):
    html = chat_settings(owner_client, chat, profile=posted)
    assert "That model is not available to you. Pick one from the list." in html
    chat.refresh_from_db()
    assert chat.profile_id is None


def test_profiles_offered_to_a_user_or_a_group_are_theirs_to_pick_and_no_one_elses(
    owner, other, owner_client, client, chat, scripted_server
):
    just_owner = offer(scripted_server.url, "Just owner", "m1", available_to_all=False)
    just_owner.users.add(owner)
    writers = Group.objects.create(name="writers")
    by_group = offer(scripted_server.url, "Writers' model", "m2", available_to_all=False)
    by_group.groups.add(writers)
    hidden = offer(scripted_server.url, "Nobody's", "m3", available_to_all=False)

    page = owner_client.get(reverse("chats:settings", args=[chat.code])).content.decode()
    assert "Just owner" in page and "Writers" not in page and "Nobody" not in page
    owner.groups.add(writers)
    page = owner_client.get(reverse("chats:settings", args=[chat.code])).content.decode()
    assert "Writers&#x27; model" in page
    chat_settings(owner_client, chat, profile=by_group.code)
    chat.refresh_from_db()
    assert chat.profile == by_group
    assert "That model is not available" in chat_settings(owner_client, chat, profile=hidden.code)

    client.force_login(other)
    their_chat = make_chat(user=other, character=chat.character)
    for profile in (just_owner, by_group, hidden):
        assert "That model is not available" in chat_settings(client, their_chat, profile=profile.code)


def test_a_profile_staff_stop_offering_is_no_longer_used(owner, owner_client, chat, four, scripted_server):
    make_active(four["site"])
    chat_settings(owner_client, chat, profile=four["chat"].code)
    four["chat"].available_to_all = False
    four["chat"].save()
    send_and_finish(owner_client, chat)
    assert used_model(scripted_server) == "model-site"


def test_each_reply_names_its_model_and_sampling_on_the_chat_page_and_in_the_inspector(
    owner, owner_client, chat, scripted_server
):
    beta = offer(scripted_server.url, "Beta", "tiny-beta", temperature=0.3, top_p=0.5)
    chat_settings(owner_client, chat, profile=beta.code)
    reply = send_and_finish(owner_client, chat)
    assert reply.meta["profile"] == {
        "code": str(beta.code),
        "name": "Beta",
        "model": "tiny-beta",
        "source": "this chat's choice",
    }
    page = owner_client.get(chat.get_absolute_url()).content.decode()
    line = re.search(r'<p class="model-line[^>]*>(.*?)</p>', page, re.S).group(1)
    assert "tiny-beta (Beta)" in line
    assert "temperature 0.3" in line and "top-p 0.5" in line and "up to 32 tokens" in line
    # The header names the chat's model too.
    assert "data-engine>tiny-beta (Beta)<" in page
    inspector = owner_client.get(
        reverse("chats:message_prompt", args=[chat.code, reply.seq])
    ).content.decode()
    assert "tiny-beta (Beta)" in inspector
    assert "Beta (model <code>tiny-beta</code>) · from this chat&#x27;s choice" in inspector


def test_each_swipe_keeps_the_model_that_wrote_it(owner, owner_client, chat, scripted_server):
    alpha = offer(scripted_server.url, "Alpha", "tiny-alpha")
    beta = offer(scripted_server.url, "Beta", "tiny-beta")
    chat_settings(owner_client, chat, profile=alpha.code)
    first = send_and_finish(owner_client, chat)
    assert first.model_label == "tiny-alpha (Alpha)"
    chat_settings(owner_client, chat, profile=beta.code)
    owner_client.post(reverse("chats:message_regenerate", args=[chat.code, first.seq]))
    generation.wait_for(first.pk)
    first.refresh_from_db()
    assert first.model_label == "tiny-beta (Beta)" and first.alternative_count == 2
    html = owner_client.post(
        reverse("chats:message_swipe", args=[chat.code, first.seq]), {"index": 0, "version": first.version}
    ).json()["html"]
    assert "tiny-alpha (Alpha)" in html and "tiny-beta" not in html


def test_in_a_group_chat_each_character_speaks_through_its_own_default(owner, owner_client, scripted_server):
    wren, mira = make_character(name="Wren"), make_character(name="Mira")
    alpha = offer(scripted_server.url, "Alpha", "tiny-alpha")
    beta = offer(scripted_server.url, "Beta", "tiny-beta")
    chat = make_chat(user=owner, character=wren)
    owner_client.post(reverse("chats:members", args=[chat.code]), {"action": "add", "character": mira.pk})
    mira_chat = make_chat(user=owner, character=mira)
    # Each default set from a chat with that character.
    chat_settings(owner_client, chat, character_default=alpha.code)
    chat_settings(owner_client, mira_chat, character_default=beta.code)

    def speak(who) -> Message:
        response = owner_client.post(
            reverse("chats:send", args=[chat.code]), {"content": "Hi", "speaker": who.code}
        )
        reply = chat.messages.get(seq=response.json()["reply_seq"])
        generation.wait_for(reply.pk)
        reply.refresh_from_db()
        return reply

    assert speak(mira).model_label == "tiny-beta (Beta)"
    assert speak(wren).model_label == "tiny-alpha (Alpha)"
    # The chat's own choice applies to every member.
    chat_settings(owner_client, chat, profile=beta.code, character_default=alpha.code)
    assert speak(wren).model_label == "tiny-beta (Beta)"


def test_a_branch_keeps_the_chats_model(owner, owner_client, chat, scripted_server):
    beta = offer(scripted_server.url, "Beta", "tiny-beta")
    chat_settings(owner_client, chat, profile=beta.code)
    send_and_finish(owner_client, chat)
    url = owner_client.post(reverse("chats:message_branch", args=[chat.code, 2])).json()["url"]
    branch = ChatSession.objects.get(code=url.strip("/").rsplit("/", 1)[1])
    assert branch.profile == beta
    # The copied reply still names its model.
    assert branch.messages.get(seq=2).model_label == "tiny-beta (Beta)"


def test_staff_offer_a_profile_to_users_and_groups_in_the_admin(
    client, admin_user, owner, owner_client, chat
):
    from django.test import Client

    writers = Group.objects.create(name="writers")
    staff = Client()
    staff.force_login(admin_user)
    response = staff.post(
        reverse("admin:settings_app_connectionprofile_add"),
        {
            "name": "For Olivia",
            "mode": "chat",
            "base_url": "https://models.example.com/v1",
            "model": "m",
            "api_key": "",
            "users": [owner.pk],
            "groups": [writers.pk],
            "context_size": 4096,
            "max_tokens": 300,
            "temperature": 0.8,
            "top_p": 0.95,
            "top_k": 40,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "stop_strings": "[]",
            "seed": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    profile = ConnectionProfile.objects.get(name="For Olivia")
    assert list(profile.users.all()) == [owner] and list(profile.groups.all()) == [writers]
    assert profile.owner is None and not profile.available_to_all
    chat_settings(owner_client, chat, profile=profile.code)
    chat.refresh_from_db()
    assert chat.profile == profile


def test_the_chat_page_names_the_model_the_next_reply_will_use_after_every_change(
    owner, owner_client, chat, four, scripted_server
):
    """The page's "Model:" line is cached (chats.profiles.resolved_label); every kind of change
    that picks another model shows at the next page load."""

    def label() -> str:
        page = owner_client.get(chat.get_absolute_url()).content.decode()
        return re.search(r"<span data-engine>([^<]*)</span>", page).group(1)

    assert label() == "built-in demo model (SmolLM2-135M)"
    make_active(four["site"])
    assert label() == "model-site (Site)"
    owner_client.post(reverse("settings_app:models"), {"profile": four["user"].code})
    assert label() == "model-user (User)"
    chat_settings(owner_client, chat, character_default=four["character"].code)
    assert label() == "model-character (Character)"
    chat_settings(owner_client, chat, profile=four["chat"].code, character_default=four["character"].code)
    assert label() == "model-chat (Chat)"
    # Staff rename it, then offer it to a group the user is in, then take the user out of it.
    four["chat"].model = "model-chat-2"
    four["chat"].save()
    assert label() == "model-chat-2 (Chat)"
    writers = Group.objects.create(name="writers")
    owner.groups.add(writers)
    four["chat"].available_to_all = False
    four["chat"].save()
    four["chat"].groups.add(writers)
    assert label() == "model-chat-2 (Chat)"
    owner.groups.remove(writers)
    assert label() == "model-character (Character)"
    CharacterModelDefault.objects.filter(user=owner).delete()
    assert label() == "model-user (User)"
