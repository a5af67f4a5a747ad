"""SillyTavern presets driving prompts: each kind imported from a fixture in SillyTavern's format
(tests/settings_app/presets/), chosen for a chat, and the prompt it builds compared exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chats import story
from chats.generation import prompt_for
from chats.prompt import build_prompt
from settings_app import engines
from settings_app.models import SiteSettings
from settings_app.services import preset_import
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db

PRESETS = Path(__file__).parent.parent / "settings_app" / "presets"


def imported(owner, relative: str):
    result = preset_import(source=PRESETS / relative, file_name=relative, owner=owner)
    assert result.status == "imported", result.reason
    return result.object


def choose(client, chat, **presets):
    """Pick presets for the chat on its settings page, as a user does."""
    form = {"title": chat.title, "author_note_depth": 4, "author_note_frequency": 1,
            "author_note_role": "system", "turn_strategy": "mention"}  # fmt: skip
    form.update({name: str(preset.code) for name, preset in presets.items()})
    response = client.post(f"/chats/{chat.code}/settings/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    chat.refresh_from_db()
    return chat


def build(chat, *, mode, **kw):
    return build_prompt(
        session=chat,
        character=chat.character,
        user_name="Olivia",
        persona_description=kw.pop("persona_description", ""),
        site=SiteSettings.load(),
        context_size=2048,
        reply_tokens=100,
        before_seq=chat.last_seq + 1,
        mode=mode,
        presets=story.chat_presets(chat),
        **kw,
    )


@pytest.fixture
def mira():
    return make_character(
        name="Mira",
        description="{{char}} keeps the lighthouse.",
        personality="wry",
        scenario="",
        example_dialogue="<START>\n{{user}}: Hello?\n{{char}}: Who goes there?",
    )


def test_a_context_template_story_string_shapes_a_text_prompt(owner, owner_client, mira):
    site = SiteSettings.load()
    site.system_prompt = "Be {{char}}."
    site.save()
    chat = make_chat(user=owner, character=mira, messages=2)
    chat = choose(owner_client, chat, context_preset=imported(owner, "context/Storyteller.json"))
    prompt = build(chat, mode="text", persona_description="a sailor")
    assert prompt.text == (
        "Be Mira.\n"
        "## Mira\n"
        "Mira keeps the lighthouse.\n"
        "Temper: wry\n"
        "Setting: anywhere\n"
        "About Olivia: a sailor\n"
        "~~~\n"
        "Olivia: Hello?\nMira: Who goes there?\n"
        "~~~ The tale begins ~~~\n"
        "Olivia: Message 1\n"
        "Mira: Message 2\n"
        "Mira:"
    )
    assert prompt.stop == ["\nOlivia:", "\n~~~ The tale begins ~~~", "\n~~~"]
    assert prompt.built_with == {"context template": "Storyteller"}


def test_an_instruct_template_wraps_each_turn(owner, owner_client, mira):
    site = SiteSettings.load()
    site.system_prompt = "Be {{char}}."
    site.save()
    chat = make_chat(user=owner, character=mira, messages=2)
    chat = choose(owner_client, chat, instruct_preset=imported(owner, "instruct/Bracket Turns.json"))
    prompt = build(chat, mode="text")
    assert prompt.text == (
        "Be Mira.\n"
        "Mira keeps the lighthouse.\n"
        "Mira's personality: wry\n"
        "[[Olivia says]]\nHello?[[end]]\n"
        "[[Mira answers]]\nWho goes there?[[end]]\n"
        "[[Olivia says]]\nMessage 1[[end]]\n"
        "[[Mira answers]]\nMessage 2[[end]]\n"
        "[[Mira answers]]\n"
    )
    assert prompt.stop == ["\n[[end]]", "\n[[Olivia says]]", "\n[[Mira answers]]", "\n[[note]]"]
    assert prompt.built_with == {"instruct template": "Bracket Turns"}


def test_context_and_instruct_together_and_the_note_is_a_system_turn(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=2)
    chat = choose(
        owner_client,
        chat,
        context_preset=imported(owner, "context/Storyteller.json"),
        instruct_preset=imported(owner, "instruct/Bracket Turns.json"),
        sysprompt_preset=imported(owner, "sysprompt/Quiet Narrator.json"),
    )
    # The author's note, one message from the end, goes in as a system turn.
    chat.author_note, chat.author_note_depth = "Fog rolls in.", 1
    chat.save()
    prompt = build(chat, mode="text")
    assert prompt.text == (
        "Narrate Mira softly for Olivia.\n"
        "## Mira\n"
        "Mira keeps the lighthouse.\n"
        "Temper: wry\n"
        "Setting: anywhere\n"
        "~~~\n"
        "[[Olivia says]]\nHello?[[end]]\n"
        "[[Mira answers]]\nWho goes there?[[end]]\n"
        "~~~ The tale begins ~~~\n"
        "[[Olivia says]]\nMessage 1[[end]]\n"
        "[[note]]\nFog rolls in.[[end]]\n"
        "[[Mira answers]]\nMessage 2[[end]]\n"
        "[[Mira answers]]\n"
    )
    assert prompt.built_with == {
        "context template": "Storyteller",
        "instruct template": "Bracket Turns",
        "system prompt": "Quiet Narrator",
    }


def test_a_system_prompt_preset_replaces_the_instances_in_chat_mode(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=0)
    chat = choose(owner_client, chat, sysprompt_preset=imported(owner, "sysprompt/Quiet Narrator.json"))
    prompt = build(chat, mode="chat")
    assert prompt.messages[0]["content"].startswith(
        "Narrate Mira softly for Olivia.\n\nMira keeps the lighthouse."
    )


def test_a_chat_completion_preset_orders_the_messages(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=3)
    chat = choose(owner_client, chat, chat_preset=imported(owner, "OpenAI Settings/Layered.json"))
    prompt = build(chat, mode="chat", persona_description="a sailor")
    assert prompt.messages == [
        {"role": "system", "content": "Play Mira opposite Olivia."},
        {"role": "system", "content": "Mira keeps the lighthouse."},
        {"role": "system", "content": "[Mira is wry]"},
        {"role": "user", "content": "(Keep Mira's voice dry.)"},
        {"role": "system", "content": "[Example]\nOlivia: Hello?\nMira: Who goes there?"},
        {"role": "system", "content": "[The chat starts]"},
        {"role": "user", "content": "Message 1"},
        {"role": "assistant", "content": "Message 2"},
        {"role": "system", "content": "Remember the storm."},
        {"role": "user", "content": "Message 3"},
        {"role": "system", "content": "Stay brief."},
    ]
    assert prompt.built_with == {"chat-completion preset": "Layered"}


def test_the_cards_system_prompt_still_overrides_a_presets_main_prompt(owner, owner_client):
    character = make_character(name="Mira", description="", system_prompt="Card says hi. {{original}}")
    chat = make_chat(user=owner, character=character, messages=0)
    chat = choose(owner_client, chat, chat_preset=imported(owner, "OpenAI Settings/Layered.json"))
    assert build(chat, mode="chat").messages[0] == {
        "role": "system",
        "content": "Card says hi. Play Mira opposite Olivia.",
    }


def test_sampler_presets_set_the_reply_parameters(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=1)
    chat = choose(
        owner_client,
        chat,
        sampler_preset=imported(owner, "TextGen Settings/Calm.json"),
        chat_preset=imported(owner, "OpenAI Settings/Layered.json"),
    )
    presets = story.chat_presets(chat)
    config = story.with_sampling(engines.resolve_engine(SiteSettings.load()), presets)
    assert config.sampling == {
        "temperature": 0.4,
        "top_p": 0.8,
        "max_tokens": 120,
        "top_k": 20,
        "min_p": 0.1,
        "repeat_penalty": 1.05,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "typical_p": 1,
    }
    prompt = prompt_for(
        session=chat, character=mira, site=SiteSettings.load(), config=config, before_seq=2, presets=presets
    )
    assert prompt.budget == config.context_size - 120


def test_without_presets_the_prompt_is_built_as_before(owner, mira):
    chat = make_chat(user=owner, character=mira, messages=1)
    prompt = build(chat, mode="text")
    assert prompt.built_with == {}
    assert prompt.text.startswith("<|im_start|>system\n")


def test_continuing_a_reply_leaves_it_open_in_the_instruct_turn(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=2)
    chat = choose(owner_client, chat, instruct_preset=imported(owner, "instruct/Bracket Turns.json"))
    prompt = build(chat, mode="text", continue_text="The lamp")
    assert prompt.text.endswith(
        "[[Olivia says]]\nMessage 1[[end]]\n[[Mira answers]]\nMessage 2[[end]]\n[[Mira answers]]\nThe lamp"
    )


def test_write_for_me_opens_the_users_turn(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=2)
    chat = choose(owner_client, chat, context_preset=imported(owner, "context/Storyteller.json"))
    prompt = build(chat, mode="text", impersonate=True)
    assert prompt.text.endswith(
        "Mira: Message 2\n"
        "Write Olivia's next message in this chat, in Olivia's voice, as Olivia would write it. "
        "Write only that message.\n"
        "Olivia:"
    )


def test_write_for_me_uses_the_presets_impersonation_prompt(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=1)
    chat = choose(owner_client, chat, chat_preset=imported(owner, "OpenAI Settings/Layered.json"))
    prompt = build(chat, mode="chat", impersonate=True)
    assert prompt.messages[-2:] == [
        {"role": "system", "content": "Stay brief."},
        {"role": "system", "content": "[Write as Olivia now]"},
    ]


def test_a_branch_keeps_the_chats_presets(owner, owner_client, mira):
    from chats.services import chat_branch

    chat = make_chat(user=owner, character=mira, messages=3)
    chat = choose(owner_client, chat, chat_preset=imported(owner, "OpenAI Settings/Layered.json"))
    branch = chat_branch(session=chat, at_seq=2)
    assert story.chat_presets(branch).names() == {"chat-completion preset": "Layered"}


def test_choosing_presets_costs_one_query_whatever_their_number(
    owner, owner_client, mira, django_assert_num_queries
):
    chat = make_chat(user=owner, character=mira, messages=1)
    chat = choose(
        owner_client,
        chat,
        context_preset=imported(owner, "context/Storyteller.json"),
        instruct_preset=imported(owner, "instruct/Bracket Turns.json"),
        sysprompt_preset=imported(owner, "sysprompt/Quiet Narrator.json"),
        sampler_preset=imported(owner, "TextGen Settings/Calm.json"),
        chat_preset=imported(owner, "OpenAI Settings/Layered.json"),
    )
    with django_assert_num_queries(1):
        presets = story.chat_presets(chat)
    assert len(presets.names()) == 5


def test_the_story_string_blocks_nest_and_trim_reaches_back_past_a_block():
    ctx = story.MacroContext("Mira", "Olivia")
    template = "<s>{{#if a}}A{{#if b}}B{{else}}not B{{/if}}\n{{/if}}{{#unless c}}no C\n{{/unless}}{{trim}}</s> {{char}}"
    assert story.render_story(template, {"a": "1", "b": ""}, ctx) == "<s>Anot B\nno C</s> Mira"
    assert story.render_story(template, {"a": "", "b": "1", "c": "x"}, ctx) == "<s></s> Mira"
    # Values go in as they are: a description holding {{#if}} or {{user}} is not read as a template.
    assert (
        story.render_story("{{description}}", {"description": "{{#if x}}{{user}}"}, ctx)
        == "{{#if x}}{{user}}"
    )


def test_the_inspector_names_only_the_presets_the_mode_uses(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=1)
    chat = choose(
        owner_client,
        chat,
        context_preset=imported(owner, "context/Storyteller.json"),
        chat_preset=imported(owner, "OpenAI Settings/Layered.json"),
    )
    assert build(chat, mode="chat").built_with == {"chat-completion preset": "Layered"}
    assert build(chat, mode="text").built_with == {"context template": "Storyteller"}


def test_a_preset_broken_in_the_admin_is_left_out_not_fatal(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=1)
    context = imported(owner, "context/Storyteller.json")
    chat = choose(owner_client, chat, context_preset=context)
    context.data["story_string"] = 42  # what a slip in the admin's JSON field can do
    context.save()
    prompt = build(chat, mode="text")
    assert prompt.built_with == {}
    assert prompt.text.startswith("<|im_start|>system\n")


def test_an_unwrapped_instruct_template_with_names_and_a_last_sequence(owner, owner_client, mira):
    chat = make_chat(user=owner, character=mira, messages=2)
    chat = choose(owner_client, chat, instruct_preset=imported(owner, "instruct/Pipe Turns.json"))
    chat.author_note, chat.author_note_depth = "Fog.", 0
    chat.save()
    site = SiteSettings.load()
    site.system_prompt = ""
    site.save()
    prompt = build(chat, mode="text")
    assert prompt.text == (
        "Mira keeps the lighthouse.\n"
        "Mira's personality: wry\n"
        # skip_examples: the blocks as they are (no separator in the default context template)
        "Olivia: Hello?\nMira: Who goes there?\n"
        "|in|Begin, Mira.|/in|"
        "|in|Olivia: Message 1|/in|"
        "|out| Mira: Message 2|/out|"
        # The note is a system turn, sent as the user's (system same as user), with no name.
        "|in|Fog.|/in|"
        # The output sequence's trailing space comes back before the name (SillyTavern's Mistral rule).
        "|last| Mira:"
    )
    assert prompt.stop == ["|stop|", "|in|", "|out| ", "|last|", "|sys|"]


def test_parts_a_preset_switches_off_cost_no_budget(owner, owner_client):
    character = make_character(name="Mira", description="", scenario="A long scenario. " * 50)
    chat = make_chat(user=owner, character=character, messages=1)
    chat = choose(owner_client, chat, chat_preset=imported(owner, "OpenAI Settings/Layered.json"))
    prompt = build(chat, mode="chat")
    # Layered's order switches the scenario off: it is neither sent nor counted.
    assert "A long scenario" not in str(prompt.messages)
    assert [p.name for p in prompt.parts] == [
        "system prompt",
        "post-history instructions",
        "chat-completion preset prompts",
        "chat history (1 messages)",
    ]


def test_write_for_me_still_asks_for_the_users_message_under_a_preset_without_one(owner):
    bare = {"prompts": [{"identifier": "chatHistory", "marker": True}],
            "prompt_order": [{"character_id": 100001, "order": [{"identifier": "chatHistory", "enabled": True}]}]}  # fmt: skip
    result = preset_import(source=json.dumps(bare).encode(), file_name="Bare.json", owner=owner)
    chat = make_chat(user=owner, character=make_character(name="Mira"), messages=1)
    chat.chat_preset = result.object
    chat.save()
    prompt = build(chat, mode="chat", impersonate=True)
    assert prompt.messages == [
        {"role": "system", "content": "[Start a new Chat]"},  # SillyTavern's default, the file has none
        {"role": "user", "content": "Message 1"},
        {
            "role": "system",
            "content": "Write Olivia's next message in this chat, in Olivia's voice, as Olivia would "
            "write it. Write only that message.",
        },
    ]


def test_a_group_chat_names_each_line_once_under_templates(owner, owner_client, mira):
    quince = make_character(name="Quince", description="A cook.")
    chat = make_chat(user=owner, character=mira, messages=2)
    owner_client.post(f"/chats/{chat.code}/members/", {"action": "add", "character": quince.pk})
    chat = choose(
        owner_client,
        chat,
        context_preset=imported(owner, "context/Storyteller.json"),
        instruct_preset=imported(owner, "instruct/Pipe Turns.json"),
    )
    prompt = build_prompt(
        session=chat,
        character=quince,
        user_name="Olivia",
        persona_description="",
        site=SiteSettings.load(),
        context_size=2048,
        reply_tokens=100,
        before_seq=chat.last_seq + 1,
        mode="text",
        presets=story.chat_presets(chat),
        members=[mira, quince],
    )
    # The other member is in the persona slot; each line carries its speaker once; the turn opens
    # for the member who speaks next, without a second name.
    assert "About Olivia: Also in this chat: Mira: Mira keeps the lighthouse." in prompt.text
    assert prompt.text.endswith(
        "|in|Begin, Quince.|/in|~~~ The tale begins ~~~\n"
        "|in|olivia: Message 1|/in||out| Mira: Message 2|/out||last|"
    )
    # Without an instruct template, another member's name at a line start ends the reply too.
    chat.instruct_preset = None
    chat.save()
    plain = build_prompt(
        session=chat, character=quince, user_name="Olivia", persona_description="", site=SiteSettings.load(),
        context_size=2048, reply_tokens=100, before_seq=chat.last_seq + 1, mode="text",
        presets=story.chat_presets(chat), members=[mira, quince],
    )  # fmt: skip
    assert plain.stop == ["\nOlivia:", "\nMira:", "\n~~~ The tale begins ~~~", "\n~~~"]
    assert plain.text.endswith("olivia: Message 1\nMira: Message 2\nQuince:")


@pytest.mark.django_db(transaction=True)
def test_a_reply_written_with_presets_says_so_in_the_inspector(owner, owner_client, mira, tiny_builtin):
    from chats import generation
    from tools.tiny_model import TINY_REPLY

    chat = make_chat(user=owner, character=mira, messages=2)
    chat = choose(
        owner_client,
        chat,
        chat_preset=imported(owner, "OpenAI Settings/Layered.json"),
        sampler_preset=imported(owner, "TextGen Settings/Calm.json"),
    )
    owner_client.post(f"/chats/{chat.code}/send/", {"content": "Light the lamp"})
    reply = chat.messages.get(seq=4)
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert reply.content == TINY_REPLY
    assert reply.meta["parameters"]["temperature"] == 0.4
    html = owner_client.get(f"/chats/{chat.code}/messages/4/prompt/").content.decode()
    assert "sampler preset “Calm”; chat-completion preset “Layered”" in html
    assert "Play Mira opposite" in html and "Remember the storm." in html


def test_memory_goes_where_lore_after_the_character_goes_with_a_story_string(owner, owner_client, mira):
    from chats import memory

    chat = make_chat(user=owner, character=mira, messages=2)
    chat = choose(owner_client, chat, context_preset=imported(owner, "context/Storyteller.json"))
    memory.add_fact(session=chat, text="The lamp is blue.")
    prompt = build(chat, mode="text")
    assert "Setting: anywhere\n[Memory]\nFacts to keep in mind:\n- The lamp is blue.\n" in prompt.text
