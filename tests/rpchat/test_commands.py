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
