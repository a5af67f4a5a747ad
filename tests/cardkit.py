"""Cards, lorebooks and SillyTavern chats built in code for the interop tests.

PNG cards are written with Pillow's own PngInfo, not with rpchat's chunk writer, so reading them
tests rpchat against an independent writer.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import zipfile

from PIL import Image, PngImagePlugin


def v1_card(name: str = "Ada") -> dict:
    return {
        "name": name,
        "description": "A clockwork archivist.",
        "personality": "precise, curious",
        "scenario": "The archive at midnight.",
        "first_mes": "*Gears whir.* Welcome, {{user}}.",
        "mes_example": "<START>\n{{user}}: Hi\n{{char}}: Hello.",
    }


def character_book() -> dict:
    return {
        "name": "Archive lore",
        "description": "What Ada knows.",
        "scan_depth": 6,
        "token_budget": 300,
        "recursive_scanning": True,
        "extensions": {"vendor/flag": [1, 2]},
        "entries": [
            {
                "keys": ["archive", "stacks"],
                "content": "The archive has nine floors.",
                "extensions": {"position": 1, "depth": 4, "x_custom": {"a": None}},
                "enabled": True,
                "insertion_order": 50,
                "case_sensitive": False,
                "name": "Archive",
                "priority": 5,
                "id": 0,
                "comment": "floors",
                "selective": True,
                "secondary_keys": ["floor"],
                "constant": False,
                "position": "after_char",
            },
            {
                "keys": ["lamp"],
                "content": "The lamps never go out.",
                "extensions": {},
                "enabled": False,
                "insertion_order": 100,
                "id": "lamp-1",
                "unknown_entry_key": "kept",
            },
        ],
    }


def v2_card(name: str = "Ada", *, book: bool = True) -> dict:
    data = {
        **v1_card(name),
        "creator_notes": "Made for tests.",
        "system_prompt": "{{original}} Stay precise.",
        "post_history_instructions": "",
        "alternate_greetings": ["*A lamp flickers.* Oh, a visitor."],
        "tags": ["Steampunk", "archive"],
        "creator": "tests",
        "character_version": "1.2",
        "extensions": {
            "talkativeness": "0.5",
            "fav": False,
            "world": "",
            "depth_prompt": {"prompt": "", "depth": 4, "role": "system"},
            "vendor/x": {"y": [1, "z"]},
        },
        "an_unknown_data_key": {"kept": True},
    }
    if book:
        data["character_book"] = character_book()
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data, "an_unknown_top_key": 7}


def v3_card(name: str = "Ada", *, book: bool = True) -> dict:
    card = v2_card(name, book=book)
    card["spec"] = "chara_card_v3"
    card["spec_version"] = "3.0"
    data = card["data"]
    data["nickname"] = "Addy"
    data["group_only_greetings"] = ["Hello, all of you."]
    data["creator_notes_multilingual"] = {"fr": "Pour les tests."}
    data["source"] = ["https://example.org/ada"]
    data["creation_date"] = 1700000000
    data["modification_date"] = 0
    data["assets"] = [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}]
    if book:
        data["character_book"]["entries"][0]["use_regex"] = False
    return card


def image_png(size=(24, 36), color=(200, 40, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(card: dict) -> str:
    return base64.b64encode(json.dumps(card).encode("utf-8")).decode("ascii")


def png_card(chunks: dict[str, str], *, size=(24, 36), color=(200, 40, 90)) -> bytes:
    """A PNG whose tEXt chunks are `chunks` (keyword -> text), written by Pillow."""
    info = PngImagePlugin.PngInfo()
    for keyword, text in chunks.items():
        info.add_text(keyword, text)
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def apng_card(card: dict) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("chara", b64(card))
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:], duration=100, pnginfo=info)
    return buffer.getvalue()


def charx(card: dict, *, icon: bytes | None = None, icon_path: str = "assets/icon/images/main.png") -> bytes:
    card = copy.deepcopy(card)
    if icon is not None:
        card["data"]["assets"] = [
            {"type": "icon", "uri": f"embeded://{icon_path}", "name": "main", "ext": "png"}
        ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", json.dumps(card))
        if icon is not None:
            archive.writestr(icon_path, icon)
    return buffer.getvalue()


def world_info() -> dict:
    """A SillyTavern World Info file, as worlds/<name>.json holds it."""
    return {
        "entries": {
            "0": {
                "uid": 0,
                "key": ["harbor"],
                "keysecondary": ["night"],
                "comment": "The harbor",
                "content": "Ships come in at dawn.",
                "constant": False,
                "vectorized": False,
                "selective": True,
                "selectiveLogic": 3,
                "addMemo": True,
                "order": 120,
                "position": 4,
                "disable": False,
                "excludeRecursion": False,
                "preventRecursion": True,
                "delayUntilRecursion": False,
                "probability": 80,
                "useProbability": True,
                "depth": 2,
                "group": "places",
                "groupOverride": False,
                "groupWeight": 100,
                "scanDepth": None,
                "caseSensitive": None,
                "matchWholeWords": None,
                "useGroupScoring": None,
                "automationId": "",
                "role": 1,
                "sticky": 2,
                "cooldown": None,
                "delay": None,
                "displayIndex": 0,
                "aFutureField": {"st": "keeps adding fields"},
            },
            "7": {
                "uid": 7,
                "key": ["tavern"],
                "keysecondary": [],
                "comment": "",
                "content": "The tavern is warm.",
                "constant": True,
                "selective": False,
                "order": 100,
                "position": 0,
                "disable": True,
                "displayIndex": 1,
            },
        }
    }


def st_header(**fields) -> dict:
    header = {
        "user_name": "Olivia",
        "character_name": "Ada",
        "create_date": "2024-10-18@20h52m17s",
        "chat_metadata": {
            "integrity": "4f9c1c9e-1111-2222-3333-444455556666",
            "note_prompt": "Ada is tired.",
            "note_interval": 2,
            "note_depth": 3,
            "note_position": 1,
            "note_role": 0,
            "timedWorldInfo": {"sticky": {}, "cooldown": {}},
            "an_extension_key": [1, 2, 3],
        },
    }
    header.update(fields)
    return header


def st_messages() -> list[dict]:
    """A short chat covering what SillyTavern writes: swipes, a hidden message, odd dates, extras."""
    return [
        {
            "name": "Ada",
            "is_user": False,
            "is_system": False,
            "send_date": "October 18, 2024 8:52pm",
            "mes": "*Gears whir.* Welcome.",
            "extra": {},
            "swipes": ["*Gears whir.* Welcome.", "*A lamp flickers.* Oh, a visitor."],
            "swipe_id": 0,
            "swipe_info": [],
        },
        {
            "name": "Olivia",
            "is_user": True,
            "is_system": False,
            "send_date": "2024-10-18@20h53m01s",
            "mes": "Hello! What is this place?",
            "extra": {"isSmallSys": False},
            "force_avatar": "User Avatars/olivia.png",
        },
        {
            "name": "Ada",
            "is_user": False,
            "is_system": False,
            "send_date": 1729284900000,
            "mes": "The second answer.",
            "extra": {"api": "openai", "model": "gpt-4o-mini", "reasoning": "think"},
            "gen_started": "2024-10-18T20:54:50.000Z",
            "gen_finished": "2024-10-18T20:55:00.000Z",
            "swipes": ["The first answer.", "The second answer.", "The third answer."],
            "swipe_id": 1,
            "swipe_info": [
                {
                    "send_date": "October 18, 2024 8:54pm",
                    "gen_started": None,
                    "gen_finished": None,
                    "extra": {"api": "openai", "model": "gpt-4o-mini"},
                },
                {
                    "send_date": "October 18, 2024 8:55pm",
                    "gen_started": None,
                    "gen_finished": None,
                    "extra": {"api": "openai", "model": "gpt-4o-mini", "reasoning": "think"},
                },
                {
                    "send_date": "October 18, 2024 8:56pm",
                    "gen_started": None,
                    "gen_finished": None,
                    "extra": {"api": "openai", "model": "gpt-4o-mini"},
                },
            ],
        },
        {
            "name": "Olivia",
            "is_user": True,
            "is_system": True,
            "send_date": "2024-10-18 @20h 56m 17s 123ms",
            "mes": "(a hidden aside)",
            "extra": {},
        },
        {
            "name": "Ada",
            "is_user": False,
            "send_date": "2024-10-18T21:00:00+02:00",
            "mes": "One swipe only.",
            "extra": {"api": "openai"},
            "swipes": ["One swipe only."],
            "swipe_id": 0,
            "swipe_info": [{"send_date": "October 18, 2024 9:00pm", "extra": {"api": "openai"}}],
        },
    ]


def jsonl(lines: list[dict]) -> bytes:
    return "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode("utf-8")
