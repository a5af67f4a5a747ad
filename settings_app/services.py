from django.db import transaction

from .models import Persona


def persona_save(*, persona: Persona) -> Persona:
    """Save a persona; making it the default takes the default from the user's others."""
    with transaction.atomic():
        if persona.is_default:
            Persona.objects.filter(user=persona.user, is_default=True).exclude(pk=persona.pk).update(
                is_default=False
            )
        persona.save()
    return persona
