from django.core.management.base import BaseCommand

from core.cache_backends import clear_environment


class Command(BaseCommand):
    help = (
        "Drop every cached value of this environment (keys under CACHE_KEY_PREFIX); run it after "
        "restoring a database by hand, before starting the server."
    )

    def handle(self, *args, **options):
        clear_environment()
        self.stdout.write(self.style.SUCCESS("Dropped this environment's cached values."))
