"""manage.py import_sillytavern: a whole SillyTavern user folder in, resumable, failures named."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from characters.models import Character, Lorebook
from chats import sillytavern
from chats.models import ChatMember, ChatSession, Message
from settings_app.models import Persona
from tests import cardkit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def solo_chat(n: int) -> bytes:
    lines = [cardkit.st_header()] + [
        {
            "name": "Olivia" if i % 2 else "Ada",
            "is_user": bool(i % 2),
            "mes": f"Message {i + 1}",
            "send_date": 1729284737000 + i * 60000,
        }
        for i in range(n)
    ]
    return cardkit.jsonl(lines)


@pytest.fixture
def st_folder(tmp_path):
    """SillyTavern's data folder with one user, as SillyTavern lays it out."""
    user = tmp_path / "data" / "default-user"
    for sub in ("characters", "chats/Ada", "chats/Ghost", "groups", "group chats", "worlds", "User Avatars"):
        (user / sub).mkdir(parents=True)
    ada = cardkit.v2_card("Ada")
    ada["data"]["extensions"]["world"] = "Harbor"
    (user / "characters" / "Ada.png").write_bytes(cardkit.png_card({"chara": cardkit.b64(ada)}))
    (user / "characters" / "Bram.png").write_bytes(
        cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card("Bram", book=False))})
    )
    (user / "characters" / "Broken.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (user / "chats" / "Ada" / "Ada - 2024-10-18@20h52m17s.jsonl").write_bytes(solo_chat(120))
    header = cardkit.st_header()
    header["chat_metadata"]["world_info"] = "Harbor"
    (user / "chats" / "Ada" / "Ada - swipes.jsonl").write_bytes(
        cardkit.jsonl([header, *cardkit.st_messages()])
    )
    (user / "chats" / "Ada" / "damaged.jsonl").write_bytes(solo_chat(3) + b"\n{oops")
    (user / "chats" / "Ghost" / "Ghost - 2024.jsonl").write_bytes(solo_chat(2))
    (user / "groups" / "1700000000000.json").write_text(
        json.dumps(
            {
                "id": "1700000000000",
                "name": "The crew",
                "members": ["Ada.png", "Bram.png"],
                "chat_id": "1700000000001",
                "chats": ["1700000000001"],
                "activation_strategy": 0,
                "disabled_members": ["Bram.png"],
            }
        )
    )
    (user / "group chats" / "1700000000001.jsonl").write_bytes(
        cardkit.jsonl(
            [
                {"chat_metadata": {}, "user_name": "unused", "character_name": "unused"},
                {
                    "name": "Ada",
                    "is_user": False,
                    "mes": "Hello crew.",
                    "send_date": 1729284737000,
                    "original_avatar": "Ada.png",
                },
                {"name": "Olivia", "is_user": True, "mes": "Hi.", "send_date": 1729284738000},
                {
                    "name": "Bram",
                    "is_user": False,
                    "mes": "Aye.",
                    "send_date": 1729284739000,
                    "original_avatar": "Bram.png",
                },
            ]
        )
    )
    (user / "worlds" / "Harbor.json").write_text(json.dumps(cardkit.world_info()))
    (user / "User Avatars" / "olivia.png").write_bytes(cardkit.image_png(size=(10, 10)))
    (user / "settings.json").write_text(
        json.dumps(
            {
                "power_user": {
                    "personas": {"olivia.png": "Olivia", "knight.png": "Sir Olivia"},
                    "persona_descriptions": {
                        "olivia.png": {"description": "A curious traveller.", "position": 0}
                    },
                    "default_persona": "olivia.png",
                }
            }
        )
    )
    return tmp_path / "data"


def run(folder, *args) -> tuple[str, str | None]:
    out = StringIO()
    try:
        call_command("import_sillytavern", str(folder), *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def test_a_sillytavern_folder_is_imported_for_a_user(st_folder, owner):
    out, error = run(st_folder, "--user", "olivia")
    assert "  personas: 2 imported, 0 skipped, 0 failed" in out
    assert "  lorebooks: 1 imported, 0 skipped, 0 failed" in out
    assert "  cards: 2 imported, 0 skipped, 1 failed" in out
    assert "  chats: 3 imported, 0 skipped, 2 failed (128 messages imported)" in out
    assert error == "3 file(s) could not be imported (listed above); everything else was."

    assert set(Character.objects.values_list("name", "owner__username", "visibility")) == {
        ("Ada", "olivia", "private"),
        ("Bram", "olivia", "private"),
    }
    solo = ChatSession.objects.get(title="Ada - 2024-10-18@20h52m17s")
    assert (solo.user, solo.character.name, solo.message_count) == (owner, "Ada", 120)
    group = ChatSession.objects.get(is_group=True)
    assert group.title == "The crew"
    # SillyTavern's natural order, and Bram disabled (muted) in the group
    assert group.turn_strategy == "natural"
    assert list(
        ChatMember.objects.filter(session=group, muted=True).values_list("character__name", flat=True)
    ) == ["Bram"]
    assert list(ChatMember.objects.filter(session=group).values_list("character__name", flat=True)) == [
        "Ada",
        "Bram",
    ]
    assert list(
        Message.objects.filter(session=group).order_by("seq").values_list("character__name", flat=True)
    ) == ["Ada", None, "Bram"]
    olivia = Persona.objects.get(user=owner, name="Olivia")
    assert (olivia.description, olivia.is_default, bool(olivia.avatar)) == (
        "A curious traveller.",
        True,
        True,
    )
    assert Persona.objects.get(name="Sir Olivia").is_default is False
    harbor = Lorebook.objects.get(character__isnull=True)
    assert harbor.name == "Harbor"
    assert Lorebook.objects.get(character__name="Ada").entries.count() == 2
    # The links SillyTavern keeps by name: the card's world and the chat's own book.
    assert list(Character.objects.get(name="Ada").lorebooks.all()) == [harbor]
    assert list(ChatSession.objects.get(title="Ada - swipes").lorebooks.all()) == [harbor]
    assert not ChatSession.objects.get(title="Ada - 2024-10-18@20h52m17s").lorebooks.exists()


def test_each_failure_is_named_with_its_reason(st_folder, owner):
    out, _ = run(st_folder, "--user", "olivia")
    failures = re.findall(r"  failed: (.+)", out)
    assert failures == [
        "characters/Broken.png: the PNG is truncated: it ends before its IEND chunk",
        "chats/Ada/damaged.jsonl: 1 broken line(s), nothing was imported: line 5: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        "chats/Ghost/Ghost - 2024.jsonl: no card characters/Ghost.png was imported",
    ]
    assert not ChatSession.objects.filter(title="damaged").exists()


def test_broken_lines_can_be_skipped_with_an_option(st_folder, owner):
    out, _ = run(st_folder, "--user", "olivia", "--skip-broken-lines")
    assert "  chats: 4 imported, 0 skipped, 1 failed (131 messages imported)" in out
    assert "  note: chats/Ada/damaged.jsonl: skipped 1 broken line(s): line 5: invalid JSON" in out
    assert ChatSession.objects.get(title="damaged").message_count == 3


def test_a_second_run_skips_everything_already_imported(st_folder, owner):
    run(st_folder, "--user", "olivia")
    out, _ = run(st_folder, "--user", "olivia", "-v", "2")
    assert "  cards: 0 imported, 2 skipped, 1 failed" in out
    assert "  chats: 0 imported, 3 skipped, 2 failed (0 messages imported)" in out
    assert "  skipped: characters/Ada.png: already imported as Ada" in out
    assert (
        Character.objects.count() == 2 and ChatSession.objects.count() == 3 and Message.objects.count() == 128
    )


def test_an_interrupted_import_resumes_where_it_stopped(st_folder, owner, monkeypatch):
    real = sillytavern.chat_import_sillytavern
    calls = []

    def stop_at_the_second_chat(**kwargs):
        calls.append(kwargs["file_name"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(sillytavern, "chat_import_sillytavern", stop_at_the_second_chat)
    with pytest.raises(KeyboardInterrupt):
        run(st_folder, "--user", "olivia")
    assert ChatSession.objects.count() == 1
    monkeypatch.setattr(sillytavern, "chat_import_sillytavern", real)
    out, _ = run(st_folder, "--user", "olivia")
    assert "  chats: 2 imported, 1 skipped, 2 failed" in out
    assert ChatSession.objects.count() == 3


def test_an_imported_chat_opens_at_its_newest_50_messages(st_folder, owner, client):
    run(st_folder, "--user", "olivia")
    client.force_login(owner)
    html = client.get(ChatSession.objects.get(message_count=120).get_absolute_url()).content.decode()
    assert [int(s) for s in re.findall(r'data-seq="(\d+)"', html)] == list(range(71, 121))


def test_progress_follows_the_bytes_read_up_to_the_folders_total(st_folder, owner):
    seen = []
    sillytavern.sillytavern_folder_import(
        root=st_folder, user=owner, progress=lambda n, label: seen.append(n)
    )
    assert all(n >= 0 for n in seen)
    assert sum(seen) == sillytavern.sillytavern_folder_size(st_folder)


def test_the_user_defaults_to_the_only_superuser(st_folder, admin_user):
    out, _ = run(st_folder)
    assert "for root:" in out
    assert Character.objects.filter(owner=admin_user).count() == 2


def test_bad_arguments_are_command_errors(tmp_path, owner):
    assert run(tmp_path, "--user", "olivia")[1].endswith(
        "is not a SillyTavern data folder (no characters/ or chats/ in it)"
    )
    assert run(tmp_path)[1] == "Give --user NAME: the imported data needs an owner."
