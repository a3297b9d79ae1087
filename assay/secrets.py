"""Secrets Assay stores for projects (judge API keys): encrypted at rest with Fernet.

The keys come from settings.SECRETS_KEYS (ASSAY_SECRETS_KEY, comma-separated): the first
encrypts, every one decrypts (MultiFernet), so a key is rotated by putting a new one first,
re-encrypting (`manage.py rotate_judge_keys`), then dropping the old one. Without it, only a
DEBUG server (the demo) stores secrets, under a key derived from SECRET_KEY with HKDF.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretsUnavailable(Exception):
    """This server cannot store or read secrets: the message says what to set."""


def _derived_key() -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"assay judge keys v1")
    return base64.urlsafe_b64encode(hkdf.derive(settings.SECRET_KEY.encode()))


def _fernet() -> MultiFernet:
    keys = list(getattr(settings, "SECRETS_KEYS", None) or [])
    if not keys:
        if not settings.DEBUG:
            raise SecretsUnavailable(
                "this server stores no secrets until its operator sets ASSAY_SECRETS_KEY "
                "(a Fernet key)"
            )
        keys = [_derived_key()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretsUnavailable(
            "the stored key cannot be decrypted with this server's ASSAY_SECRETS_KEY (was the "
            "key changed without keeping the old one?): a project admin must enter it again"
        ) from None


def rotate(token: str) -> str:
    """`token` re-encrypted under the first key."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretsUnavailable(
            "a stored key cannot be decrypted with any key in ASSAY_SECRETS_KEY"
        ) from None
