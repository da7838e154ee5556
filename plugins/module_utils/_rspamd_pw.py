# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rspamd controller password hashes, pure Python (no Rspamd needed).

Rspamd's controller accepts "$1$<salt>$<key>" (what `rspamadm pw -t pbkdf2`
prints): PBKDF2 over keyed BLAKE2b-512 with the password as the BLAKE2b key,
16000 rounds, a 20-byte random salt and a 32-byte key, both written in
Rspamd's base32 (the z-base-32 alphabet, least significant bits first).
"""

from __future__ import annotations

import hashlib
import hmac
import os

ALPHABET = 'ybndrfg8ejkmcpqxot1uwisza345h769'
ROUNDS = 16000
SALT_BYTES = 20
KEY_BYTES = 32
_BLAKE2B_KEY_MAX = 64


class RspamdPasswordError(ValueError):
    """A password or a stored hash that cannot be used."""


def b32encode(data):
    """Rspamd's base32: 5 bits at a time from the least significant end."""
    out, acc, bits = [], 0, 0
    for byte in bytearray(data):
        acc |= byte << bits
        bits += 8
        while bits >= 5:
            out.append(ALPHABET[acc & 31])
            acc >>= 5
            bits -= 5
    if bits:
        out.append(ALPHABET[acc & 31])
    return ''.join(out)


def b32decode(text):
    out, acc, bits = bytearray(), 0, 0
    for char in text:
        index = ALPHABET.find(char)
        if index < 0:
            raise RspamdPasswordError('not Rspamd base32: %r' % char)
        acc |= index << bits
        bits += 5
        while bits >= 8:
            out.append(acc & 255)
            acc >>= 8
            bits -= 8
    return bytes(out)


def _prf(key, data):
    if len(key) > _BLAKE2B_KEY_MAX:
        # As Rspamd does for long passwords: hash them down to a BLAKE2b key.
        key = hashlib.blake2b(key, digest_size=64).digest()
    return hashlib.blake2b(data, key=key, digest_size=64).digest()


def pbkdf2_blake2b(password, salt, key_len=KEY_BYTES, rounds=ROUNDS):
    """Rspamd's PBKDF2 with keyed BLAKE2b-512 as the pseudo-random function."""
    out = b''
    count = 1
    while len(out) < key_len:
        block = _prf(password, salt + count.to_bytes(4, 'big'))
        acc = bytearray(block)
        for _ in range(1, rounds):
            block = _prf(password, block)
            for i in range(len(acc)):
                acc[i] ^= block[i]
        out += bytes(acc)
        count += 1
    return out[:key_len]


def hash_password(password, salt=None):
    """A "$1$salt$key" hash Rspamd's controller verifies."""
    if not isinstance(password, str) or not password:
        raise RspamdPasswordError('the password is empty')
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = pbkdf2_blake2b(password.encode('utf-8'), salt)
    return '$1$%s$%s' % (b32encode(salt), b32encode(key))


def verify_password(password, stored):
    """True when password matches a "$1$" hash (other schemes: False)."""
    if not password or not stored or not stored.startswith('$1$'):
        return False
    parts = stored.split('$')
    if len(parts) != 4:
        return False
    try:
        salt, key = b32decode(parts[2]), b32decode(parts[3])
    except RspamdPasswordError:
        return False
    if len(key) < KEY_BYTES:
        return False
    return hmac.compare_digest(pbkdf2_blake2b(password.encode('utf-8'), salt), key[:KEY_BYTES])


def keep_or_hash(password, stored=None):
    """The stored hash while the password still verifies, else a new one."""
    if stored and verify_password(password, stored):
        return stored
    return hash_password(password)
