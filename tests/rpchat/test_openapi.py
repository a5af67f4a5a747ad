"""The OpenAPI document is generated from the API's operations, matches the URLconf both ways, is
served, and describes every answer: each operation is called on data made through the real flows
(an imported card, a chat answered by the tiny model) and every JSON body it gives is validated
against the document, field by field. Every other API URL refuses anonymous visitors with a JSON 401."""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import datetime

import pytest
from django.urls import URLPattern, get_resolver, resolve, reverse
from jsonschema import Draft202012Validator, FormatChecker

from characters.services import card_import
from chats import generation
from chats.models import ChatSession
from settings_app.auth import api_token_create
from tests import cardkit

pytestmark = pytest.mark.django_db


def api_paths() -> dict[str, str]:
    """/api/ URL patterns as OpenAPI paths ({code} for <uuid:code>), with their names."""
    resolver = get_resolver()
    prefix, api = next(
        (str(p.pattern), p) for p in resolver.url_patterns if getattr(p, "namespace", None) == "api"
    )
    paths = {}
    for pattern in api.url_patterns:
        assert isinstance(pattern, URLPattern)
        route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        paths["/" + route] = pattern.name
    assert prefix == "api/"
    return paths


def schema(client) -> dict:
    response = client.get(reverse("api:openapi"))
    assert response.status_code == 200
    return response.json()


def test_every_documented_path_exists_and_every_api_url_is_documented(client):
    # The document describes the operations; it does not describe itself.
    operations = {path for path, name in api_paths().items() if name != "openapi"}
    assert set(schema(client)["paths"]) == operations


def test_every_documented_schema_reference_resolves(client):
    document = schema(client)
    refs = re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', json.dumps(document))
    assert refs
    for section, name in refs:
        assert name in document["components"][section], name


def test_the_schema_is_served_to_anyone_with_an_etag(client):
    response = client.get(reverse("api:openapi"))
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.")
    assert response["Cache-Control"] == "public, max-age=300"
    assert client.get(reverse("api:openapi"), HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


def test_there_is_no_docs_page_to_load_scripts_from_elsewhere(client, owner_client):
    # ninja's default docs page loads Swagger UI from a CDN; the Content-Security-Policy allows
    # only this site's own scripts, so the page is not served at all.
    assert set(api_paths().values()) == {
        "openapi",
        "characters",
        "character",
        "search_characters",
        "chats",
        "chat",
        "messages",
        "search_messages",
    }
    for url in ("/api/docs", "/api/docs/", "/api/"):
        assert owner_client.get(url).status_code == 404, url


def test_every_other_api_url_answers_anonymous_visitors_with_a_json_401(client):
    for path, name in api_paths().items():
        if name == "openapi":
            continue
        url = "/api" + path.replace("{code}", str(uuid.uuid4()))
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.json()["error"] and response["WWW-Authenticate"].startswith("Bearer")


def test_the_documented_message_fields_are_the_ones_sent(owner_client, owner):
    from tests.factories import make_character, make_chat

    chat = make_chat(user=owner, character=make_character(), messages=1)
    sent = owner_client.get(reverse("api:messages", args=[chat.code])).json()["messages"][0]
    documented = schema(owner_client)["components"]["schemas"]["ChatMessage"]["properties"]
    assert set(sent) == set(documented)


# --- every answer against the document ---------------------------------------------------------------

FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


def strict(document: dict) -> dict:
    """The document with every object closed: a field a schema does not declare is an error even
    if the generated schema ever stops saying so itself."""
    document = copy.deepcopy(document)

    def close(node):
        if isinstance(node, dict):
            if "properties" in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(document["components"])
    close(document["paths"])
    return document


def operation_of(url: str) -> str:
    """The document's path for an API URL: /api/chats/<uuidstr:code>/ -> /chats/{code}/."""
    route = resolve(url.split("?", maxsplit=1)[0]).route
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.removeprefix("api/"))


def problems(document: dict, path: str, method: str, status: int, body: bytes) -> list[str]:
    """What is wrong with an answer according to `document` (strict()), as readable lines."""
    responses = document["paths"][path][method]["responses"]
    if str(status) not in responses:
        return [f"{method.upper()} {path} answered {status}, which is not documented"]
    content = responses[str(status)].get("content")
    if content is None:
        return [] if body == b"" else [f"{status} is documented without a body, but one was sent"]
    declared = content["application/json"]["schema"]
    validator = Draft202012Validator(
        {**declared, "components": document["components"]}, format_checker=FORMATS
    )
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(json.loads(body))
    ]


@pytest.fixture
def world(owner, other, client, tiny_builtin):
    """Characters from real card files, and a chat whose reply the tiny model wrote."""
    with_picture = card_import(
        source=cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card("Ada"))}),
        file_name="ada.png",
        owner=owner,
    ).object
    without_picture = card_import(
        source=json.dumps(cardkit.v3_card("Bram", book=False)).encode(),
        file_name="bram.json",
        owner=None,
    ).object
    assert with_picture.thumbnail and not without_picture.avatar
    client.force_login(owner)
    client.post(reverse("chats:new", args=[with_picture.code]))
    chat = ChatSession.objects.get(user=owner)
    assert client.post(reverse("chats:send", args=[chat.code]), {"content": "Hello, Ada"}).status_code == 200
    reply = chat.messages.order_by("-seq").first()
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert reply.role == "assistant" and reply.status == "complete" and reply.content
    client.logout()
    others_chat = ChatSession.objects.create(user=other, character=without_picture)
    return {"characters": [with_picture, without_picture], "chat": chat, "others_chat": others_chat}


@pytest.mark.django_db(transaction=True)
def test_every_answer_of_every_operation_is_what_the_document_says(client, owner, world):
    document = strict(schema(client))
    ada, bram = world["characters"]
    chat = world["chat"]
    _, token = api_token_create(user=owner, name="contract")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    messages = reverse("api:messages", args=[chat.code])
    search = reverse("api:search_messages")
    nowhere = uuid.uuid4()
    calls = [
        # (URL, expected status, with the token?)
        (reverse("api:characters"), 200, True),
        (reverse("api:characters") + "?q=ada&tag=steampunk", 200, True),
        (reverse("api:characters") + "?page=0", 400, True),
        (reverse("api:character", args=[ada.code]), 200, True),
        (reverse("api:character", args=[bram.code]), 200, True),
        (reverse("api:character", args=[nowhere]), 404, True),
        (reverse("api:search_characters") + "?q=ada", 200, True),
        (reverse("api:search_characters"), 400, True),
        (reverse("api:chats"), 200, True),
        (reverse("api:chats") + f"?character={ada.code}", 200, True),
        (reverse("api:chats") + "?character=not-a-code", 400, True),
        (reverse("api:chat", args=[chat.code]), 200, True),
        (reverse("api:chat", args=[world["others_chat"].code]), 404, True),
        (messages, 200, True),
        (messages + "?before=2", 200, True),
        (messages + "?after=0", 200, True),
        (messages + "?before=9223372036854775808", 400, True),
        (reverse("api:messages", args=[nowhere]), 404, True),
        (search + "?q=hello", 200, True),
        (search + f"?q=hello&chat={chat.code}&limit=1", 200, True),
        (search + "?q=hello&limit=51", 400, True),
        (search + f"?q=hello&chat={world['others_chat'].code}", 404, True),
    ]
    for path in document["paths"]:
        calls.append(("/api" + path.replace("{code}", str(chat.code)), 401, False))
    seen = set()
    for url, expected, with_token in calls:
        headers = auth if with_token else {}
        response = client.get(url, **headers)
        assert response.status_code == expected, (url, response.content)
        path = operation_of(url)
        assert problems(document, path, "get", response.status_code, response.content) == [], url
        seen.add((path, response.status_code))
        if response.status_code == 200 and response.has_header("ETag"):
            again = client.get(url, HTTP_IF_NONE_MATCH=response["ETag"], **headers)
            assert again.status_code == 304, url
            assert problems(document, path, "get", 304, again.content) == [], url
            seen.add((path, 304))
    documented = {
        (path, int(status))
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        for status in operation["responses"]
    }
    # Every documented answer was given and checked: a new operation or status needs a call above.
    assert documented == seen


def test_the_check_catches_an_undeclared_field_a_missing_one_and_a_wrong_type(owner_client, owner):
    from tests.factories import make_character, make_chat

    chat = make_chat(user=owner, character=make_character(), messages=2)
    document = strict(schema(owner_client))
    url = reverse("api:messages", args=[chat.code])
    page = owner_client.get(url).json()
    path = operation_of(url)

    def check(body):
        return problems(document, path, "get", 200, json.dumps(body).encode())

    assert check(page) == []
    extra, missing, wrong = copy.deepcopy(page), copy.deepcopy(page), copy.deepcopy(page)
    extra["messages"][0]["tokens"] = 3
    del missing["messages"][1]["content"]
    wrong["messages"][0]["seq"] = "1"
    assert "messages/0: Additional properties are not allowed ('tokens' was unexpected)" in check(extra)
    assert "messages/1: 'content' is a required property" in check(missing)
    assert "messages/0/seq: '1' is not of type 'integer'" in check(wrong)
    assert check({**page, "newer": None}) and check({**page, "older": 7})
    bad_time = copy.deepcopy(page)
    bad_time["messages"][0]["created_at"] = "yesterday"
    assert check(bad_time)
