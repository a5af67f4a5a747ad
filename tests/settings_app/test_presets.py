"""SillyTavern presets in and out: the Presets page, import_presets, import_sillytavern's preset
folders, export back to the same files, and who sees whose presets."""

from __future__ import annotations

import json
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from settings_app.models import Preset
from settings_app.services import preset_import
from tests import cardkit
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db

PRESETS = Path(__file__).parent / "presets"
FIXTURES = {
    "instruct/Bracket Turns.json": ("instruct", "Bracket Turns"),
    "instruct/Pipe Turns.json": ("instruct", "Pipe Turns"),
    "context/Storyteller.json": ("context", "Storyteller"),
    "sysprompt/Quiet Narrator.json": ("sysprompt", "Quiet Narrator"),
    # These two kinds carry no name: SillyTavern names them by their file.
    "TextGen Settings/Calm.json": ("textgen", "Calm"),
    "OpenAI Settings/Layered.json": ("openai", "Layered"),
}


def post_files(client, *files: tuple[str, bytes], json_answer: bool = True):
    uploads = [SimpleUploadedFile(name, body, content_type="application/json") for name, body in files]
    headers = {"accept": "application/json"} if json_answer else {}
    return client.post("/presets/", {"files": uploads}, headers=headers)


@pytest.mark.parametrize(("relative", "expected"), FIXTURES.items())
def test_each_kind_is_recognized_from_its_keys(owner, relative, expected):
    result = preset_import(source=PRESETS / relative, file_name=Path(relative).name, owner=owner)
    assert result.status == "imported"
    preset = Preset.objects.get()
    assert (preset.kind, preset.name, preset.owner) == (*expected, owner)


@pytest.mark.parametrize("relative", FIXTURES)
def test_export_gives_back_the_file_that_was_imported(owner_client, owner, relative):
    original = json.loads((PRESETS / relative).read_text())
    post_files(owner_client, (Path(relative).name, (PRESETS / relative).read_bytes()))
    preset = Preset.objects.get()
    response = owner_client.get(f"/presets/{preset.code}.json")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{preset.name}.json"'
    assert json.loads(response.content) == original
    # And the exported file imported again is the same preset, not a second one.
    again = preset_import(source=response.content, file_name=f"{preset.name}.json", owner=owner)
    assert again.status == "skipped"
    assert Preset.objects.count() == 1


def test_the_page_imports_several_files_and_says_what_each_was(owner_client):
    response = post_files(
        owner_client,
        ("Bracket Turns.json", (PRESETS / "instruct/Bracket Turns.json").read_bytes()),
        ("Ada.json", json.dumps(cardkit.v2_card()).encode()),
        ("broken.json", b'{"temp": 0.7,'),
        json_answer=False,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "instruct template “Bracket Turns”" in html
    assert "not a SillyTavern preset" in html
    assert "the file is not valid JSON" in html
    assert list(Preset.objects.values_list("name", flat=True)) == ["Bracket Turns"]


def test_one_file_a_request_answers_in_json(owner_client):
    response = post_files(owner_client, ("Calm.json", (PRESETS / "TextGen Settings/Calm.json").read_bytes()))
    assert response.json() == {
        "results": [
            {
                "file": "Calm.json",
                "status": "imported",
                "reason": "text-completion sampler preset “Calm”",
                "warnings": [],
            }
        ]
    }
    bad = post_files(owner_client, ("x.json", b"[1]"))
    assert bad.status_code == 400
    assert bad.json()["results"][0]["reason"] == "the file holds JSON but not an object"


def test_a_changed_file_replaces_the_preset_of_that_name(owner):
    preset_import(source=PRESETS / "sysprompt/Quiet Narrator.json", file_name="a.json", owner=owner)
    changed = {"name": "Quiet Narrator", "content": "Whisper as {{char}}."}
    result = preset_import(source=json.dumps(changed).encode(), file_name="a.json", owner=owner)
    assert (result.status, result.reason) == ("imported", "system prompt “Quiet Narrator” (replaced)")
    assert Preset.objects.get().data["content"] == "Whisper as {{char}}."


def test_a_wrongly_typed_setting_is_refused_with_its_key(owner):
    bad = {"name": "Odd", "input_sequence": 5, "output_sequence": ""}
    result = preset_import(source=json.dumps(bad).encode(), file_name="Odd.json", owner=owner)
    assert (result.status, result.reason) == ("failed", "input_sequence must be text, not a number")
    assert not Preset.objects.exists()


def test_a_master_export_imports_each_preset_in_it(owner):
    master = {
        "instruct": json.loads((PRESETS / "instruct/Bracket Turns.json").read_text()),
        "context": json.loads((PRESETS / "context/Storyteller.json").read_text()),
        "sysprompt": json.loads((PRESETS / "sysprompt/Quiet Narrator.json").read_text()),
    }
    result = preset_import(source=json.dumps(master).encode(), file_name="export.json", owner=owner)
    assert result.status == "imported"
    assert sorted(Preset.objects.values_list("kind", flat=True)) == ["context", "instruct", "sysprompt"]


def test_others_presets_are_private_and_staff_ones_shared(owner, other, admin_user, client):
    mine = preset_import(source=PRESETS / "sysprompt/Quiet Narrator.json", file_name="a.json", owner=owner)
    staff = preset_import(
        source=PRESETS / "TextGen Settings/Calm.json", file_name="Calm.json", owner=admin_user
    )
    client.force_login(other)
    assert client.get(f"/presets/{mine.object.code}.json").status_code == 404
    assert client.post(f"/presets/{mine.object.code}/delete/").status_code == 404
    assert client.get(f"/presets/{staff.object.code}.json").status_code == 200
    # Shared is not editable: only its owner deletes it.
    assert client.post(f"/presets/{staff.object.code}/delete/").status_code == 404
    page = client.get("/presets/").content.decode()
    assert "Calm" in page and "Quiet Narrator" not in page
    client.force_login(owner)
    assert client.post(f"/presets/{mine.object.code}/delete/").status_code == 302
    assert not Preset.objects.filter(pk=mine.object.pk).exists()


def test_a_chat_cannot_choose_someone_elses_preset(owner_client, owner, other):
    theirs = preset_import(
        source=PRESETS / "context/Storyteller.json", file_name="s.json", owner=other
    ).object
    chat = make_chat(user=owner, character=make_character())
    response = owner_client.post(
        f"/chats/{chat.code}/settings/",
        {"author_note_depth": 4, "author_note_frequency": 1, "author_note_role": "system",
         "turn_strategy": "mention", "context_preset": str(theirs.code)},
    )  # fmt: skip
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    chat.refresh_from_db()
    assert chat.context_preset_id is None


def test_the_page_costs_the_same_queries_for_many_presets(owner_client, owner, django_assert_num_queries):
    for relative in FIXTURES:
        preset_import(source=PRESETS / relative, file_name=Path(relative).name, owner=owner)
    owner_client.get("/presets/")  # fills the settings cache
    # one page of presets with their owners joined
    with django_assert_num_queries(1) as first:
        owner_client.get("/presets/")
    Preset.objects.bulk_create(
        Preset(owner=owner, kind="sysprompt", name=f"Extra {i}", data={"name": f"Extra {i}", "content": "x"})
        for i in range(60)
    )
    with django_assert_num_queries(len(first.captured_queries)):
        owner_client.get("/presets/")


def test_the_command_imports_a_folder_for_the_instance(tmp_path):
    out = StringIO()
    call_command("import_presets", str(PRESETS), stdout=out)
    assert "Presets: 6 imported, 0 skipped, 0 failed." in out.getvalue()
    assert set(Preset.objects.values_list("owner", flat=True)) == {None}
    out = StringIO()
    call_command("import_presets", str(PRESETS), stdout=out)
    assert "Presets: 0 imported, 6 skipped, 0 failed." in out.getvalue()
    (tmp_path / "bad.json").write_text('{"what": 1}')
    with pytest.raises(CommandError, match="1 failed"):
        call_command("import_presets", str(tmp_path), stdout=StringIO())


def test_import_sillytavern_brings_the_preset_folders(tmp_path, owner, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    user_folder = tmp_path / "data" / "default-user"
    shutil.copytree(PRESETS, user_folder)
    (user_folder / "characters").mkdir()
    (user_folder / "characters" / "Ada.png").write_bytes(
        cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card())})
    )
    out = StringIO()
    call_command("import_sillytavern", str(tmp_path / "data"), "--user", "olivia", stdout=out)
    assert "  presets: 6 imported, 0 skipped, 0 failed" in out.getvalue()
    assert set(Preset.objects.values_list("kind", "name", "owner__username")) == {
        ("instruct", "Bracket Turns", "olivia"),
        ("instruct", "Pipe Turns", "olivia"),
        ("context", "Storyteller", "olivia"),
        ("sysprompt", "Quiet Narrator", "olivia"),
        ("textgen", "Calm", "olivia"),
        ("openai", "Layered", "olivia"),
    }


def test_export_presets_writes_a_folder_sillytavern_and_import_presets_read_back(tmp_path, owner):
    call_command("import_presets", str(PRESETS), "--user", "olivia", stdout=StringIO())
    out = StringIO()
    call_command("export_presets", str(tmp_path / "st"), "--user", "olivia", stdout=out)
    assert f"Exported 6 preset(s) to {tmp_path / 'st'}." in out.getvalue()
    written = sorted(str(p.relative_to(tmp_path / "st")) for p in (tmp_path / "st").rglob("*.json"))
    assert written == sorted(FIXTURES)
    for relative in FIXTURES:
        assert json.loads((tmp_path / "st" / relative).read_text()) == json.loads(
            (PRESETS / relative).read_text()
        )


def test_an_older_instruct_templates_system_prompt_becomes_a_system_prompt(owner):
    old = json.loads((PRESETS / "instruct/Bracket Turns.json").read_text())
    old.update(name="Old Brackets", system_prompt="Speak as {{char}}, in brackets.")
    result = preset_import(source=json.dumps(old).encode(), file_name="Old Brackets.json", owner=owner)
    assert result.reason == "instruct template “Old Brackets”, system prompt “[Migrated] Old Brackets”"
    migrated = Preset.objects.get(kind="sysprompt")
    assert (migrated.name, migrated.data["content"]) == (
        "[Migrated] Old Brackets",
        "Speak as {{char}}, in brackets.",
    )
    again = preset_import(source=json.dumps(old).encode(), file_name="Old Brackets.json", owner=owner)
    assert again.status == "skipped" and Preset.objects.count() == 2
