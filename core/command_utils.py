"""Shared by management commands: the user a command acts for, a progress bar, a summary line."""

from __future__ import annotations

from collections import Counter

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm


def command_user(username: str | None, *, default_superuser: bool = False):
    """The user named by --user; without it, None, or the only superuser when `default_superuser`."""
    User = get_user_model()
    if username:
        try:
            return User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"There is no user named {username!r}.") from None
    if not default_superuser:
        return None
    admins = list(User.objects.filter(is_superuser=True, is_active=True)[:2])
    if len(admins) != 1:
        raise CommandError("Give --user NAME: the imported data needs an owner.")
    return admins[0]


def progress_bar(command: BaseCommand, *, total: int, unit: str = "it", verbosity: int = 1, **kwargs) -> tqdm:
    """A tqdm bar on the command's output; shown on a terminal, silent in logs and tests."""
    # tqdm rewrites its line with \r; OutputWrapper would add a newline to every update.
    stream = getattr(command.stdout, "_out", command.stdout)
    return tqdm(
        total=total,
        unit=unit,
        file=stream,
        disable=None if verbosity >= 1 else True,
        dynamic_ncols=True,
        **kwargs,
    )


def status_counts(results) -> str:
    counts = Counter(r.status for r in results)
    return ", ".join(f"{counts[s]} {s}" for s in ("imported", "skipped", "failed"))
