from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.maillab.mailserver.plugins.filter import mailserver
from ansible_collections.maillab.mailserver.plugins.module_utils import _crypt


def test_hashes_keep_what_still_verifies():
    stored = _crypt.hash_password('password', rounds=4)
    users = [
        {'address': 'User1@example.com', 'password': 'password'},
        {'address': 'user2@example.com', 'password': 'changed'},
        {'address': 'gone@example.com', 'password': 'x', 'state': 'absent'},
        {'address': 'pre@example.com', 'password_hash': '{SHA512-CRYPT}$6$abc'},
    ]
    text = 'user1@example.com:%s::::::\nuser2@example.com:%s::::::\n' % (stored, stored)
    out = mailserver.mail_password_hashes(users, text)
    assert [u['address'] for u in out] == ['user1@example.com', 'user2@example.com', 'pre@example.com']
    assert out[0]['hash'] == stored
    assert out[1]['hash'] != stored and _crypt.verify_password('changed', out[1]['hash'])
    assert out[2]['hash'] == '{SHA512-CRYPT}$6$abc'


def test_hash_error_names_the_user_not_the_password():
    with pytest.raises(AnsibleFilterError, match='user1@example.com') as err:
        mailserver.mail_password_hashes([{'address': 'user1@example.com', 'password': 'p' * 80}])
    assert 'p' * 80 not in str(err.value)


def test_duplicates():
    assert mailserver.duplicates(['a', 'b', 'a', 'c', 'b', 'a']) == ['a', 'b']
    assert mailserver.duplicates([]) == []


def test_php_bcrypt_is_2y_and_kept():
    first = mailserver.php_bcrypt('setup-secret-1')
    assert first.startswith('$2y$10$') and len(first) == 60
    assert mailserver.php_bcrypt('setup-secret-1', first) == first
    assert mailserver.php_bcrypt('other', first) != first


def test_mail_password_verifies_php_hashes():
    stored = '{BLF-CRYPT}' + mailserver.php_bcrypt('secret-one')
    assert mailserver.mail_password_verifies('secret-one', stored)
    assert not mailserver.mail_password_verifies('secret-two', stored)


def test_tsv_index():
    lines = ['domain\texample.com\t', 'mailbox\tUser1@example.com\t{BLF-CRYPT}x', 'junk']
    assert mailserver.tsv_index(lines) == {'domain': {'example.com': ''}, 'mailbox': {'user1@example.com': '{BLF-CRYPT}x'}}


def test_rspamd_password_hash_is_kept_while_it_verifies():
    first = mailserver.rspamd_password_hash('controller-pass')
    assert first.startswith('$1$')
    assert mailserver.rspamd_password_hash('controller-pass', first) == first
    changed = mailserver.rspamd_password_hash('other-pass', first)
    assert changed != first and changed.startswith('$1$')
    with pytest.raises(AnsibleFilterError, match='empty'):
        mailserver.rspamd_password_hash('')


def test_dkim_txt_record_from_a_pem_public_key():
    pem = ('-----BEGIN PUBLIC KEY-----\n'
           'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n'
           'MIIBCgKCAQEAx7\n'
           '-----END PUBLIC KEY-----\n')
    assert mailserver.dkim_txt_record(pem) == 'v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx7'
    with pytest.raises(AnsibleFilterError, match='PUBLIC KEY'):
        mailserver.dkim_txt_record('-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n')


def test_dns_txt_quote_splits_at_255():
    value = 'v=DKIM1; k=rsa; p=' + 'A' * 400
    quoted = mailserver.dns_txt_quote(value)
    parts = quoted.split('" "')
    assert quoted.startswith('"') and quoted.endswith('"') and len(parts) == 2
    assert ''.join(p.strip('"') for p in parts) == value and len(parts[0].strip('"')) == 255
    assert mailserver.dns_txt_quote('short') == '"short"'


def test_docker_networks_put_the_service_names_on_its_first_network_only():
    assert mailserver.docker_networks(['mt-mailnet', 'mt-mail-dbnet'], ['imap', 'imap', 'dovecot']) == [
        {'name': 'mt-mailnet', 'aliases': ['imap', 'dovecot']},
        {'name': 'mt-mail-dbnet', 'aliases': []},
    ]
    assert mailserver.docker_networks('mt-mail-dbnet', 'db') == [{'name': 'mt-mail-dbnet', 'aliases': ['db']}]
