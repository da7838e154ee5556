# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of maillab.mailserver: password hashes, apt mirrors, duplicates."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.maillab.mailserver.plugins.module_utils import _apt_sources, _crypt


def mail_password_hashes(users, passwd_file_text='', rounds=10):
    """Give every present user a 'hash': the stored one when it still verifies.

    users: mailserver_users items (address, password or password_hash, state).
    passwd_file_text: the current Dovecot passwd-file, if any.
    rounds: bcrypt cost of new hashes.
    Returns [{'address': ..., 'hash': ...}] for present users, in order.
    """
    stored = _crypt.parse_passwd_file(passwd_file_text or '')
    out = []
    for user in users:
        if user.get('state', 'present') != 'present':
            continue
        address = user['address'].lower()
        if user.get('password_hash'):
            hashed = user['password_hash']
        else:
            try:
                hashed = _crypt.keep_or_hash(user.get('password') or '', stored.get(address), rounds=int(rounds))
            except _crypt.CryptError as exc:
                raise AnsibleFilterError('cannot hash the password of %s: %s' % (address, exc))
        out.append({'address': address, 'hash': hashed})
    return out


def apt_mirrors(texts):
    """{'mirror', 'security'} from the host's apt source file texts."""
    return _apt_sources.apt_mirrors(texts)


def duplicates(items):
    """Items that appear more than once, each listed once, in first-seen order."""
    seen, dups = set(), []
    for item in items:
        if item in seen and item not in dups:
            dups.append(item)
        seen.add(item)
    return dups


class FilterModule(object):
    def filters(self):
        return {
            'mail_password_hashes': mail_password_hashes,
            'apt_mirrors': apt_mirrors,
            'duplicates': duplicates,
        }
