from __future__ import annotations

import pytest

from ansible_collections.maillab.mailserver.plugins.module_utils import _rspamd_pw

# Printed by Rspamd 3.12.1's own `rspamadm pw -t pbkdf2 -p <password>`.
KNOWN = [
    ('secret1', '$1$7a3m9dym18b4qe65t3zdypruud6cxf58$xtfgnwkk7pp1fqhn95o4ub1dcx9kzdxrcfuqb3upngzbyd3t59zy'),
    ('a much longer password with spaces', '$1$5buy38r37uhdudez3cr1bw3wox11dqty$cchudqhx7wehq3xj9kwfg5a4fx6rrxyq94h3xowkgpzwx5jt358b'),
]


@pytest.mark.parametrize('password,stored', KNOWN)
def test_verifies_hashes_made_by_rspamadm(password, stored):
    assert _rspamd_pw.verify_password(password, stored)
    assert not _rspamd_pw.verify_password(password + 'x', stored)


def test_same_salt_gives_rspamadms_hash():
    password, stored = KNOWN[0]
    salt = _rspamd_pw.b32decode(stored.split('$')[2])
    assert _rspamd_pw.hash_password(password, salt=salt) == stored


def test_base32_round_trip():
    for data in (b'', b'\x00', b'\xff' * 7, bytes(range(40))):
        assert _rspamd_pw.b32decode(_rspamd_pw.b32encode(data))[:len(data)] == data


def test_keep_while_it_verifies_and_rehash_otherwise():
    stored = _rspamd_pw.hash_password('controller-pass')
    assert stored.startswith('$1$') and len(stored.split('$')[2]) == 32
    assert _rspamd_pw.keep_or_hash('controller-pass', stored) == stored
    new = _rspamd_pw.keep_or_hash('another-pass', stored)
    assert new != stored and _rspamd_pw.verify_password('another-pass', new)
    # Catena hashes ($, rspamadm's default) cannot be checked here: re-hashed.
    assert _rspamd_pw.keep_or_hash('x-pass', '$2$abc$def').startswith('$1$')


def test_refuses_an_empty_password_and_bad_hashes():
    with pytest.raises(_rspamd_pw.RspamdPasswordError):
        _rspamd_pw.hash_password('')
    assert not _rspamd_pw.verify_password('p', '$1$not base32!$x')
    assert not _rspamd_pw.verify_password('p', 'plain')
