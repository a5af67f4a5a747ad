"""Secrets encrypted at rest (connection profiles' API keys), with Fernet from `cryptography`.

The keys come from RPCHAT_ENCRYPTION_KEYS (settings.RPCHAT["ENCRYPTION_KEYS"]): Fernet keys,
comma-separated, the first one encrypting and all of them decrypting, so a key is rotated by
putting a new one first and running `manage.py rotate_secrets`. Without it, one key is derived from
SECRET_KEY, so changing SECRET_KEY then makes every stored secret unreadable (docs/security.md).
"""

from __future__ import annotations

import base64
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

logger = logging.getLogger(__name__)


class UndecryptableSecret(Exception):
    """A stored secret none of the configured keys opens (the keys changed since it was stored)."""


def _derived_key() -> bytes:
    # A key of its own for this purpose, so the Fernet key is not SECRET_KEY itself.
    digest = hashlib.sha256(b"rpchat-secrets-at-rest:" + settings.SECRET_KEY.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def _fernet() -> MultiFernet:
    keys = [key.encode() for key in settings.RPCHAT.get("ENCRYPTION_KEYS") or []]
    return MultiFernet([Fernet(key) for key in keys or [_derived_key()]])


def encrypt(plain: str) -> str:
    """`plain` encrypted with the first key; the empty string stays empty (no secret set)."""
    if not plain:
        return ""
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """The secret in `token`; UndecryptableSecret when no configured key opens it."""
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise UndecryptableSecret(
            "A stored secret cannot be decrypted: RPCHAT_ENCRYPTION_KEYS (or SECRET_KEY) changed "
            "since it was saved. Put the old key back after the new one, or enter the secret again."
        ) from exc


def rotate(token: str) -> str:
    """`token` re-encrypted with the first key (MultiFernet.rotate)."""
    if not token:
        return ""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise UndecryptableSecret("A stored secret cannot be decrypted with any configured key.") from exc
