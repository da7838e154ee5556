# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of maillab.mailserver: password hashes, apt mirrors, DKIM records, duplicates."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.maillab.mailserver.plugins.module_utils import _apt_sources, _config_files, _crypt, _rspamd_pw


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


def php_bcrypt(password, stored=''):
    """A '$2y$' bcrypt hash of password (PHP's password_hash format): the
    stored one when the password still verifies against it."""
    try:
        if stored and _crypt.verify_password(password, '{%s}%s' % (_crypt.SCHEME, stored)):
            return stored
        fresh = _crypt.hash_password(password)[len(_crypt.SCHEME) + 2:]
    except _crypt.CryptError as exc:
        raise AnsibleFilterError('cannot hash a password: %s' % exc)
    return '$2y$' + fresh[4:]


def mail_password_verifies(password, stored):
    """True when password verifies against a stored {BLF-CRYPT} hash."""
    try:
        return _crypt.verify_password(password or '', stored or '')
    except _crypt.CryptError as exc:
        raise AnsibleFilterError('cannot verify a password: %s' % exc)


def rspamd_password_hash(password, stored=''):
    """A hash Rspamd's controller verifies ("$1$", PBKDF2-BLAKE2b): the
    stored one when the password still verifies against it."""
    try:
        return _rspamd_pw.keep_or_hash(password, stored or None)
    except _rspamd_pw.RspamdPasswordError as exc:
        raise AnsibleFilterError('cannot hash an Rspamd controller password: %s' % exc)


def dkim_txt_record(public_key_pem):
    """The DKIM TXT record value ("v=DKIM1; k=rsa; p=...") for a PEM public key."""
    lines = [line.strip() for line in (public_key_pem or '').splitlines()]
    body = ''.join(line for line in lines if line and not line.startswith('-----'))
    if not body or 'BEGIN PUBLIC KEY' not in (public_key_pem or ''):
        raise AnsibleFilterError('dkim_txt_record needs a PEM "PUBLIC KEY" (SubjectPublicKeyInfo)')
    return 'v=DKIM1; k=rsa; p=' + body


def dns_txt_quote(value, size=255):
    """A TXT record value as a zone file writes it: quoted strings of at most
    255 characters each (a DKIM key of 2048 bits needs two)."""
    value = str(value)
    return ' '.join('"%s"' % value[i:i + size] for i in range(0, len(value), size)) or '""'


def tsv_index(lines):
    """{kind: {key: value}} from 'kind<TAB>key<TAB>value' lines (SQL output)."""
    index = {}
    for line in lines:
        parts = line.split('\t')
        if len(parts) >= 2:
            index.setdefault(parts[0], {})[parts[1].lower()] = parts[2] if len(parts) > 2 else ''
    return index


def apt_mirrors(texts):
    """{'mirror', 'security'} from the host's apt source file texts."""
    return _apt_sources.apt_mirrors(texts)


def duplicates(items):
    """Items that appear more than once, each listed once, in first-seen order."""
    return _config_files.duplicates(items)


def docker_networks(names, aliases):
    """docker_container's networks for a service: each network by name; the
    service's aliases (a name or a list of names) on the first one only,
    where its clients reach it. A name on a shared network (the database's)
    would also answer for another stack's container of the same service."""
    if isinstance(names, str):
        names = [names]
    if isinstance(aliases, str):
        aliases = [aliases]
    aliases = list(dict.fromkeys(str(a) for a in aliases if a))
    return [{'name': str(name), 'aliases': aliases if i == 0 else []} for i, name in enumerate(names)]


class FilterModule(object):
    def filters(self):
        return {
            'mail_password_hashes': mail_password_hashes,
            'apt_mirrors': apt_mirrors,
            'php_bcrypt': php_bcrypt,
            'tsv_index': tsv_index,
            'mail_password_verifies': mail_password_verifies,
            'duplicates': duplicates,
            'docker_networks': docker_networks,
            'rspamd_password_hash': rspamd_password_hash,
            'dkim_txt_record': dkim_txt_record,
            'dns_txt_quote': dns_txt_quote,
        }
