"""Untrusted text (cards, messages, personas, titles) never becomes script, handlers or foreign URLs."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from characters.models import Tag
from chats.models import Message, PromptSnapshot
from settings_app.models import Persona
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db

PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<img src="javascript:alert(1)">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>">',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](  javascript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    "![x](https://evil.example/track.png)",
    "<body onload=alert(1)>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<form action=javascript:alert(1)><button>x</button></form>",
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "<link rel=stylesheet href=https://evil.example/x.css>",
    "<style>@import 'https://evil.example/x.css';</style>",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "{{7*7}}{% debug %}",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    '<a href="https://ok.example" onclick="alert(1)">ok</a>',
    "<video><source onerror=alert(1)></video>",
    "<audio src=x onerror=alert(1)>",
    "<marquee onstart=alert(1)>",
    "<isindex type=image src=1 onerror=alert(1)>",
    '<!--<img src="--><img src=x onerror=alert(1)//">',
    "\u003cscript\u003ealert(1)\u003c/script\u003e",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    "javascript:alert(1)",
]

BAD_SCHEMES = ("javascript:", "vbscript:", "data:text")


# Tags no untrusted text may ever produce.
FORBIDDEN_TAGS = ("iframe", "object", "embed", "base", "svg", "math", "style", "link", "meta")


class Audit(HTMLParser):
    """Collects what would run or load: scripts, handlers, bad URL schemes, foreign images."""

    def __init__(self, *, body: bool):
        super().__init__(convert_charrefs=True)
        self.body = body
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and not (attrs.get("src") or "").startswith("/static/"):
            self.problems.append(f"script tag {attrs}")
        for name, value in attrs.items():
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>")
            if name in ("href", "src", "action", "data", "formaction") and (
                value and "".join(value.split()).lower().startswith(BAD_SCHEMES)
            ):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name == "srcdoc" or (name == "style" and "url(" in (value or "")):
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag == "img" and (attrs.get("src") or "").startswith(("http:", "https:", "//")):
            self.problems.append(f"external image {attrs.get('src')}")
        # The page's own head tags are fine; inside a message or card they are not.
        if self.body and tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}> in the page body")


def audit(html: str) -> list[str]:
    head, _, main = html.partition('<main id="main">')
    problems = []
    for part, body in ((head, False), (main or head, bool(main))):
        parser = Audit(body=body)
        parser.feed(part)
        problems += parser.problems
    return sorted(set(problems))


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_payloads_in_every_user_and_card_field_are_neutralized(owner_client, owner, payload):
    character = make_character(
        owner=owner,
        public=False,
        name=payload[:200],
        nickname=payload[:200],
        description=payload,
        personality=payload,
        scenario=payload,
        first_message=payload,
        creator_notes=payload,
        creator=payload[:200],
        label=payload[:60],
        tags=[payload[:60]],
    )
    chat = make_chat(user=owner, character=character, messages=2, text=payload)
    Message.objects.filter(session=chat).update(speaker=payload[:200])
    chat.title = payload[:200]
    chat.author_note = payload
    chat.save()
    reply = chat.messages.get(seq=2)
    PromptSnapshot.objects.create(
        message=reply,
        data={
            "messages": [{"role": "user", "content": payload}],
            "parts": [{"name": payload, "tokens": 1, "included": True}],
            "budget": 1,
            "used": 1,
            "text": payload,
        },
    )
    Persona.objects.create(user=owner, name=payload[:100], description=payload)
    pages = [
        reverse("characters:gallery"),
        reverse("characters:gallery") + "?q=" + payload[:50],
        character.get_absolute_url(),
        reverse("chats:list"),
        chat.get_absolute_url(),
        reverse("chats:settings", args=[chat.code]),
        reverse("chats:message_prompt", args=[chat.code, 2]),
        reverse("personas:list"),
    ]
    for url in pages:
        response = owner_client.get(url)
        assert response.status_code == 200, url
        problems = audit(response.content.decode())
        assert not problems, f"{url}: {problems}"
    older = owner_client.get(reverse("chats:older", args=[chat.code]), {"before": 3}).json()["html"]
    assert not audit(older)


def test_the_corpus_is_large_enough():
    assert len(PAYLOADS) >= 40
    assert Tag.objects.count() == 0
