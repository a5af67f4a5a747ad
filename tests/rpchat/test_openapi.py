"""The OpenAPI description matches the URLconf both ways, is served, and every other API URL
refuses anonymous visitors with a JSON 401."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.conf import settings
from django.urls import URLPattern, get_resolver, reverse

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


def schema() -> dict:
    return json.loads((settings.BASE_DIR / "docs" / "openapi.json").read_text())


def test_every_documented_path_exists_and_every_api_url_is_documented():
    assert set(schema()["paths"]) == set(api_paths())


def test_every_documented_schema_reference_resolves():
    document = schema()
    refs = re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', json.dumps(document))
    assert refs
    for section, name in refs:
        assert name in document["components"][section], name


def test_the_schema_is_served_to_anyone_with_an_etag(client):
    response = client.get(reverse("api:openapi"))
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.")
    assert client.get(reverse("api:openapi"), HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


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
    documented = schema()["components"]["schemas"]["Message"]["properties"]
    assert set(sent) == set(documented)
