from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from characters.models import Character

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_the_cast_once():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "4 created" in out.getvalue()
    count = Character.objects.filter(owner=None, visibility="public").count()
    assert count == 4
    call_command("seed_demo", stdout=(out := StringIO()))
    assert "0 created, 4 already there" in out.getvalue()
    assert Character.objects.count() == count
    assert all(c.thumbnail for c in Character.objects.all())


def test_ensure_admin_prints_a_password_once_and_it_works(client):
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    text = out.getvalue()
    password = text.split("password: ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)
    again = StringIO()
    call_command("ensure_admin", stdout=again)
    assert again.getvalue() == ""
    assert client.login(username="admin", password=password)


def test_signup_creates_an_account_and_logs_in(client):
    response = client.post(
        "/accounts/signup/",
        {"username": "newbie", "password1": "a-long-pass-phrase-7", "password2": "a-long-pass-phrase-7"},
    )
    assert response.status_code == 302
    assert client.get("/characters/").status_code == 200


def test_signup_can_be_closed(client):
    from settings_app.models import SiteSettings

    site = SiteSettings.load()
    site.allow_signup = False
    site.save()
    assert client.get("/accounts/signup/").status_code == 404


def test_seed_demo_draws_each_demo_character_a_portrait_in_the_cards_frame():
    import io

    from PIL import Image

    from characters.portraits import demo_portrait

    call_command("seed_demo", stdout=StringIO())
    pictures = set()
    for character in Character.objects.filter(owner=None):
        with character.avatar.open("rb") as file:
            data = file.read()
        assert Image.open(io.BytesIO(data)).size == (400, 600)
        assert data == demo_portrait(character.name)  # drawn the same way every time
        pictures.add(data)
    assert len(pictures) == 4


def test_seed_demo_redraws_the_old_square_portraits_and_refresh_thumbnails_remakes_old_thumbnails():
    import io

    from django.core.files.base import ContentFile
    from PIL import Image

    from characters.services import thumbnail_is_current

    call_command("seed_demo", stdout=StringIO())
    wren = Character.objects.get(name="Wren of the Hollow")
    square, old_thumb = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (256, 256), "green").save(square, format="PNG")
    Image.new("RGB", (128, 128), "green").save(old_thumb, format="PNG")
    wren.avatar.save("old.png", ContentFile(square.getvalue()), save=False)
    wren.thumbnail.save("old.png", ContentFile(old_thumb.getvalue()), save=False)
    wren.save()
    assert not thumbnail_is_current(wren)
    call_command("seed_demo", stdout=(out := StringIO()))
    assert "1 portrait(s) drawn again" in out.getvalue()
    wren.refresh_from_db()
    assert Image.open(wren.avatar.open("rb")).size == (400, 600) and thumbnail_is_current(wren)

    # A character imported before thumbnails were 2:3: its thumbnail is made again from its avatar.
    wren.thumbnail.save("old.png", ContentFile(old_thumb.getvalue()), save=True)
    call_command("refresh_thumbnails", stdout=(out := StringIO()))
    assert "1 made, 3 already current" in out.getvalue()
    wren.refresh_from_db()
    assert Image.open(wren.thumbnail.open("rb")).size == (300, 450)
    call_command("refresh_thumbnails", stdout=(out := StringIO()))
    assert "0 made, 4 already current" in out.getvalue()
