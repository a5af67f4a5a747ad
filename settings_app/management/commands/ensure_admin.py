import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "On first run, create an admin account and print its one-time password (never again)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.WARNING(
                "\n  An admin account was created. Write this down: it is shown only once.\n"
                f"    username: {username}\n    password: {password}\n"
                "  Change it after logging in (Admin > Users). \n"
            )
        )
