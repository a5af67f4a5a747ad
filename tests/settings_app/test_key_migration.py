"""Upgrading: API keys stored in clear before encryption at rest are encrypted by the migration."""

from __future__ import annotations

import sqlite3

import pytest

from tools.servers import manage_py, server_env

pytestmark = pytest.mark.slow


def test_a_key_stored_in_clear_is_encrypted_by_the_upgrade_and_still_works(tmp_path):
    """On a database of its own, at the schema before the upgrade, with a key stored in clear."""
    env = server_env(RPCHAT_VAR_DIR=str(tmp_path), CACHE_KEY_PREFIX="rpchat-key-migration")
    manage_py(env, "migrate", "settings_app", "0006_user_preferences", "-v0")
    db = sqlite3.connect(tmp_path / "rpchat.sqlite3")
    with db:
        db.execute(
            "INSERT INTO settings_app_connectionprofile (code, name, mode, base_url, api_key, model, "
            "context_size, max_tokens, temperature, top_p, top_k, min_p, repetition_penalty, stop_strings, "
            "created_at, updated_at) VALUES ('0123456789abcdef0123456789abcdef', 'Old', 'chat', "
            "'https://x.example/v1', 'sk-old-plain-key', '', 4096, 300, 0.8, 0.95, 40, 0.05, 1.1, '[]', "
            "'2026-01-01', '2026-01-01')"
        )
    manage_py(env, "migrate", "-v0")
    (stored,) = db.execute("SELECT api_key_encrypted FROM settings_app_connectionprofile").fetchone()
    db.close()
    assert stored and "sk-old-plain-key" not in stored
    out = manage_py(
        env,
        "shell",
        "-c",
        "from settings_app.models import ConnectionProfile; print(ConnectionProfile.objects.get().api_key)",
    )
    assert out.strip().endswith("sk-old-plain-key")
