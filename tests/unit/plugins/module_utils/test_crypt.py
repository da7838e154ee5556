from __future__ import annotations

import pytest

from ansible_collections.maillab.mailserver.plugins.module_utils import _crypt


def test_hash_verifies_and_is_kept():
    stored = _crypt.hash_password('password', rounds=4)
    assert stored.startswith('{BLF-CRYPT}$2b$04$')
    assert _crypt.verify_password('password', stored)
    assert not _crypt.verify_password('Password', stored)
    assert _crypt.keep_or_hash('password', stored) == stored
    changed = _crypt.keep_or_hash('new one', stored, rounds=4)
    assert changed != stored and _crypt.verify_password('new one', changed)


def test_other_schemes_are_rehashed():
    assert not _crypt.verify_password('password', '{PLAIN}password')
    assert _crypt.keep_or_hash('password', '{PLAIN}password', rounds=4).startswith('{BLF-CRYPT}')


def test_refuses_empty_and_too_long():
    with pytest.raises(_crypt.CryptError):
        _crypt.hash_password('')
    with pytest.raises(_crypt.CryptError, match='72 bytes'):
        _crypt.hash_password('x' * 73)


def test_parse_passwd_file():
    text = '# comment\nuser1@example.com:{BLF-CRYPT}$2b$x::::::\n\nuser2@example.com:{PLAIN}p\n'
    assert _crypt.parse_passwd_file(text) == {'user1@example.com': '{BLF-CRYPT}$2b$x', 'user2@example.com': '{PLAIN}p'}
