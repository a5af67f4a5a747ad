from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from characters import revisions
from characters.models import Character
from chats.models import ChatSession, Message
from chats.services import messages_delete


class Command(BaseCommand):
    help = "Purge chats and characters deleted longer ago than RPCHAT_TRASH_DAYS."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="Override RPCHAT_TRASH_DAYS.")
        parser.add_argument("--dry-run", action="store_true", help="Only say what would be purged.")

    def handle(self, *args, days, dry_run, **options):
        days = settings.RPCHAT["TRASH_DAYS"] if days is None else days
        cutoff = timezone.now() - timedelta(days=days)
        chats = list(ChatSession.objects.filter(deleted_at__lt=cutoff).values_list("pk", flat=True))
        # A character goes only once no chat of anyone's uses it: other people's writing is kept.
        characters = Character.objects.filter(deleted_at__lt=cutoff).exclude(
            pk__in=ChatSession.objects.exclude(pk__in=chats).values("character_id")
        )
        if dry_run:
            self.stdout.write(f"Would purge {len(chats)} chats and {characters.count()} characters.")
            return
        messages = 0
        for pk in tqdm(chats, desc="chats", unit="chat", disable=not chats, file=self.stderr):
            messages += purge_chat(pk)
        purged_characters = 0
        for character in characters.only("pk", "avatar", "thumbnail"):
            # Its pictures now and those its History kept.
            names = revisions.picture_files(character) | {
                image.name for image in (character.avatar, character.thumbnail) if image
            }
            storage = character.avatar.storage
            for name in names:
                storage.delete(name)
            character.delete()
            purged_characters += 1
        self.stdout.write(
            self.style.SUCCESS(
                f"Purged {len(chats)} chats ({messages} messages) and {purged_characters} characters "
                f"deleted more than {days} days ago."
            )
        )


def purge_chat(pk: int, batch: int = 5000) -> int:
    """Delete one chat's rows in plain SQL batches: never the whole chat in memory."""
    removed = 0
    while True:
        with transaction.atomic():
            ids = list(Message.objects.filter(session_id=pk).values_list("pk", flat=True)[:batch])
            if not ids:
                break
            removed += messages_delete(rows=Message.objects.filter(pk__in=ids))
    session = ChatSession.objects.filter(pk=pk).only("pk", "background").first()
    if session is not None and session.background:
        session.background.delete(save=False)
    ChatSession.objects.filter(pk=pk).delete()
    return removed
