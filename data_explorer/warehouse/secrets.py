"""Encryption of stored secrets (tenant login passwords, loader credentials) with Fernet.

The key comes from ``DATA_EXPLORER_SECRET_KEY`` or, when that is unset (the
embedded default), from ``$DATA_EXPLORER_HOME/secret.key``, generated on first
use with permissions 0600. Every process of one installation (gateway, runner
children) reads the same key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from data_explorer.config import Settings, SettingsError

KEY_FILE = "secret.key"


class SecretError(RuntimeError):
    pass


def _key_from_file(home: Path) -> bytes:
    path = home / KEY_FILE
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SettingsError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
        return path.read_bytes().strip()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable, not even briefly
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return key


class SecretBox:
    def __init__(self, key: bytes):
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise SettingsError(
                "DATA_EXPLORER_SECRET_KEY is not a Fernet key: use 32 url-safe base64-encoded bytes "
                "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> "SecretBox":
        configured = settings["DATA_EXPLORER_SECRET_KEY"]
        return cls(configured.encode() if configured else _key_from_file(settings.home))

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretError(
                "a stored secret cannot be decrypted with this key: DATA_EXPLORER_SECRET_KEY (or secret.key) "
                "changed since it was stored"
            ) from None
