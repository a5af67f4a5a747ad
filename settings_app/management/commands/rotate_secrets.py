from django.core.management.base import BaseCommand, CommandError

from core import crypto
from settings_app.models import ConnectionProfile


class Command(BaseCommand):
    help = "Re-encrypt every stored API key with the first key of RPCHAT_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        done = 0
        for profile in ConnectionProfile.objects.exclude(api_key_encrypted="").only(
            "id", "name", "api_key_encrypted"
        ):
            try:
                token = crypto.rotate(profile.api_key_encrypted)
            except crypto.UndecryptableSecret as exc:
                raise CommandError(f"The key of profile “{profile.name}” cannot be decrypted: {exc}") from exc
            ConnectionProfile.objects.filter(pk=profile.pk).update(api_key_encrypted=token)
            done += 1
        self.stdout.write(self.style.SUCCESS(f"{done} API key{'s' if done != 1 else ''} re-encrypted."))
