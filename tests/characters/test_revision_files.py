"""A purged character takes every picture its History kept along with it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from characters import revisions
from characters.models import Character
from tests.characters.test_editor import editor_form, picture
from tests.factories import make_character

pytestmark = pytest.mark.django_db


def test_prune_deletes_the_pictures_the_history_kept(owner_client, owner):
    mara = make_character(owner=owner)
    url = reverse("characters:edit", args=[mara.code])
    names = set()
    for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255)):
        form = editor_form(owner_client, mara)
        form["avatar"] = [SimpleUploadedFile("p.png", picture(color=color))]
        assert owner_client.post(url, form).status_code == 302
        mara.refresh_from_db()
        names |= {mara.avatar.name, mara.thumbnail.name}
    assert len(names) == 6 and revisions.picture_files(mara) == names
    storage = mara.avatar.storage
    assert all(storage.exists(name) for name in names)
    owner_client.post(reverse("characters:delete", args=[mara.code]))
    call_command("prune", "--days", "0", stdout=StringIO(), stderr=StringIO())
    assert not Character.objects.filter(pk=mara.pk).exists()
    assert not any(storage.exists(name) for name in names)
