# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Password hashes that Dovecot verifies: {BLF-CRYPT} (bcrypt).

A stored hash is kept when the password still verifies against it, so that a
re-run changes nothing although bcrypt salts every hash anew.
"""

from __future__ import annotations

SCHEME = 'BLF-CRYPT'
_PREFIX = '{%s}' % SCHEME

try:
    import bcrypt
except ImportError:  # reported by the callers with an actionable message
    bcrypt = None


class CryptError(Exception):
    pass


def _require():
    if bcrypt is None:
        raise CryptError('the Python package bcrypt is missing on the controller: '
                         'pip install bcrypt (it is in requirements.txt)')


def hash_password(password, rounds=10):
    """Return a new '{BLF-CRYPT}$2b$..' hash of password."""
    _require()
    if not password:
        raise CryptError('refusing to hash an empty password')
    raw = password.encode('utf-8')
    if len(raw) > 72:
        raise CryptError('bcrypt uses at most 72 bytes of a password; this one has %d' % len(raw))
    return _PREFIX + bcrypt.hashpw(raw, bcrypt.gensalt(rounds=rounds)).decode('ascii')


def verify_password(password, stored):
    """True when password verifies against a '{BLF-CRYPT}' hash."""
    _require()
    if not stored or not stored.startswith(_PREFIX) or not password:
        return False
    raw = password.encode('utf-8')
    if len(raw) > 72:
        return False
    try:
        return bcrypt.checkpw(raw, stored[len(_PREFIX):].encode('ascii'))
    except ValueError:
        return False


def keep_or_hash(password, stored=None, rounds=10):
    """The stored hash when password still verifies against it, else a new one."""
    if stored and verify_password(password, stored):
        return stored
    return hash_password(password, rounds=rounds)


def parse_passwd_file(text):
    """Map user -> password field of a Dovecot passwd-file's text."""
    users = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        user, _sep, rest = line.partition(':')
        users[user] = rest.split(':', 1)[0]
    return users
