"""Keep updated_at true to what pages and downloads show: tag changes touch the character, entry
changes touch their lorebook.

Pages and the API give updated_at as Last-Modified and build ETags from it, so a change of a
character's tags (or a tag's name) must move it like any other edit of the card.
"""

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from .models import Character, Lorebook, LorebookEntry, Tag


@receiver(m2m_changed, sender=Character.tags.through)
def touch_characters_on_tag_change(sender, instance, action, reverse, pk_set, **kwargs):
    now = timezone.now()
    if not reverse and action in ("post_add", "post_remove", "post_clear"):
        Character.objects.filter(pk=instance.pk).update(updated_at=now)
    elif reverse and action in ("post_add", "post_remove") and pk_set:
        Character.objects.filter(pk__in=pk_set).update(updated_at=now)
    elif reverse and action == "pre_clear":
        # After the clear the tag no longer says which characters had it.
        Character.objects.filter(tags=instance).update(updated_at=now)


@receiver(post_save, sender=Tag)
def touch_characters_on_tag_rename(sender, instance, created, **kwargs):
    if not created:
        Character.objects.filter(tags=instance).update(updated_at=timezone.now())


@receiver(post_save, sender=LorebookEntry)
@receiver(post_delete, sender=LorebookEntry)
def touch_lorebook_on_entry_change(sender, instance, **kwargs):
    # A card's download embeds its lorebook; the book's updated_at stands for its entries.
    Lorebook.objects.filter(pk=instance.lorebook_id).update(updated_at=timezone.now())
