"""lorebook_import and lorebook_export: SillyTavern World Info and V3 lorebook_v3 files, both ways."""

from __future__ import annotations

import json

import pytest

from characters.models import Lorebook, LorebookEntry
from characters.services import card_import, lorebook_export, lorebook_import
from tests import cardkit

pytestmark = pytest.mark.django_db


def test_a_world_info_file_becomes_a_global_lorebook_of_its_owner(owner):
    result = lorebook_import(
        source=json.dumps(cardkit.world_info()).encode(), file_name="Harbor town.json", owner=owner
    )
    assert result.status == "imported"
    book = Lorebook.objects.get()
    assert (book.name, book.owner, book.character) == ("Harbor town", owner, None)
    harbor, tavern = book.entries.order_by("id")
    assert (harbor.keys, harbor.secondary_keys, harbor.content, harbor.insertion_order) == (
        ["harbor"],
        ["night"],
        "Ships come in at dawn.",
        120,
    )
    assert (harbor.selective_logic, harbor.position, harbor.enabled) == (3, "after_char", True)
    assert harbor.extensions["depth"] == 2 and harbor.extensions["prevent_recursion"] is True
    assert harbor.entry_extra["unknown"] == {"addMemo": True, "aFutureField": {"st": "keeps adding fields"}}
    assert (tavern.constant, tavern.enabled, tavern.position) == (True, False, "before_char")


def test_a_world_info_file_exports_as_it_was_imported(owner):
    lorebook_import(source=json.dumps(cardkit.world_info()).encode(), file_name="Harbor.json", owner=owner)
    assert (
        json.loads(lorebook_export(lorebook=Lorebook.objects.get(), fmt="world_info")) == cardkit.world_info()
    )


def test_a_lorebook_v3_file_exports_as_it_was_imported(owner):
    v3 = {"spec": "lorebook_v3", "data": cardkit.character_book()}
    lorebook_import(source=json.dumps(v3).encode(), file_name="archive.json", owner=owner)
    book = Lorebook.objects.get()
    assert book.name == "Archive lore"
    assert json.loads(lorebook_export(lorebook=book, fmt="lorebook_v3")) == v3


def test_changes_made_in_rpchat_are_in_the_world_info_export(owner):
    lorebook_import(source=json.dumps(cardkit.world_info()).encode(), file_name="Harbor.json", owner=owner)
    harbor = LorebookEntry.objects.get(uid="0")
    harbor.content = "Ships come in at noon."
    harbor.selective_logic = 1
    harbor.position = "before_char"
    harbor.enabled = False
    harbor.save()
    entry = json.loads(lorebook_export(lorebook=Lorebook.objects.get(), fmt="world_info"))["entries"]["0"]
    assert (entry["content"], entry["selectiveLogic"], entry["position"], entry["disable"]) == (
        "Ships come in at noon.",
        1,
        0,
        True,
    )
    assert entry["aFutureField"] == {"st": "keeps adding fields"}


def test_a_world_info_book_exports_as_lorebook_v3_and_back_as_sillytavern_converts_it(owner):
    lorebook_import(source=json.dumps(cardkit.world_info()).encode(), file_name="Harbor.json", owner=owner)
    v3 = json.loads(lorebook_export(lorebook=Lorebook.objects.get(), fmt="lorebook_v3"))
    assert v3["spec"] == "lorebook_v3"
    harbor = v3["data"]["entries"][0]
    assert (
        harbor["id"],
        harbor["keys"],
        harbor["insertion_order"],
        harbor["enabled"],
        harbor["position"],
    ) == (0, ["harbor"], 120, True, "after_char")
    assert harbor["extensions"]["position"] == 4 and harbor["extensions"]["aFutureField"] == {
        "st": "keeps adding fields"
    }
    lorebook_import(source=json.dumps(v3).encode(), file_name="again.json", owner=owner)
    assert Lorebook.objects.count() == 2


def test_a_cards_book_exports_as_world_info_with_its_original_data(owner):
    card_import(source=json.dumps(cardkit.v2_card()).encode(), file_name="ada.json", owner=owner)
    wi = json.loads(lorebook_export(lorebook=Lorebook.objects.get(), fmt="world_info"))
    assert wi["originalData"] == cardkit.character_book()
    first = wi["entries"]["0"]
    assert (
        first["uid"],
        first["key"],
        first["order"],
        first["position"],
        first["depth"],
        first["disable"],
    ) == (0, ["archive", "stacks"], 50, 1, 4, False)
    assert wi["entries"]["lamp-1"]["disable"] is True


def test_the_same_lorebook_file_is_skipped_the_second_time(owner):
    data = json.dumps(cardkit.world_info()).encode()
    lorebook_import(source=data, file_name="Harbor.json", owner=owner)
    again = lorebook_import(source=data, file_name="Harbor.json", owner=owner)
    assert (again.status, again.reason) == ("skipped", "already imported as Harbor")


@pytest.mark.parametrize(
    "data, reason",
    [
        (
            b"{",
            "the file is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (
            json.dumps(cardkit.v2_card()).encode(),
            "this is a character card, not a lorebook: import it as a card",
        ),
        (
            json.dumps({"entries": {"0": {"key": "harbor"}}}).encode(),
            "entries['0'].key must be a list of strings, not a string",
        ),
        (json.dumps({"entries": {"0": []}}).encode(), "entries['0'] must be an object, not a list"),
        (
            json.dumps({"hello": 1}).encode(),
            'not a lorebook: expected World Info ({"entries": {...}}) or lorebook_v3',
        ),
    ],
)
def test_a_bad_lorebook_file_fails_with_its_reason_and_leaves_nothing(owner, data, reason):
    result = lorebook_import(source=data, file_name="bad.json", owner=owner)
    assert (result.status, result.reason) == ("failed", reason)
    assert Lorebook.objects.count() == 0
