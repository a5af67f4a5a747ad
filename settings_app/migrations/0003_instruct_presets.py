from django.db import migrations

from settings_app.presets import PRESETS, ensure_presets


def add_presets(apps, schema_editor):
    ensure_presets(apps.get_model("settings_app", "InstructTemplate"))


def remove_presets(apps, schema_editor):
    apps.get_model("settings_app", "InstructTemplate").objects.filter(
        name__in=[p["name"] for p in PRESETS]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("settings_app", "0002_instructtemplate_apitoken_and_more")]
    operations = [migrations.RunPython(add_presets, remove_presets)]
