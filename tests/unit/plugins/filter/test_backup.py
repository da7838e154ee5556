"""The backup role's filters: Maildir de-duplication, manifest checks, stack levels."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.maillab.mailserver.plugins.filter import backup

LEVELS = {'1': ['smtp'], '2': ['smtp', 'imap'], '3': ['smtp', 'imap', 'db', 'admin'],
          'challenge': ['smtp', 'imap', 'db', 'admin', 'rspamd', 'redis']}


def test_maildir_key_ignores_new_cur_and_flags():
    assert backup.maildir_key('./d/u/new/123.M1P2.host,S=9') == ('msg', 'd/u', '123.M1P2.host,S=9')
    assert backup.maildir_key('d/u/cur/123.M1P2.host,S=9:2,S') == ('msg', 'd/u', '123.M1P2.host,S=9')
    assert backup.maildir_key('./d/u/.Junk/cur/7.M1:2,') == ('msg', 'd/u/.Junk', '7.M1')
    assert backup.maildir_key('./d/u/tmp/9.M1') is None
    assert backup.maildir_key('./d/u/dovecot-uidlist') == ('path', 'd/u/dovecot-uidlist')
    assert backup.maildir_key('./d/u/new/') == ('path', 'd/u/new/')


def test_message_moved_during_backup_is_restored_once_under_its_latest_name():
    members = ['./d/u/new/', './d/u/new/1.M1', './d/u/cur/', './d/u/cur/1.M1:2,S', './d/u/cur/2.M2:2,',
               './d/u/cur/2.M2:2,ST', './d/u/tmp/3.M3', './d/u/dovecot-uidlist']
    plan = backup.maildir_restore_plan(members, [])
    assert plan == ['./d/u/new/', './d/u/cur/', './d/u/cur/1.M1:2,S', './d/u/cur/2.M2:2,ST', './d/u/dovecot-uidlist']


def test_messages_already_on_the_volume_are_skipped_whatever_their_flags():
    members = ['./d/u/', './d/u/new/', './d/u/new/1.M1', './d/u/cur/2.M2:2,S', './d/u/new/3.M3',
               './d/u/dovecot-uidlist', './d/v/new/1.M1']
    existing = ['./d/u/', './d/u/new/', './d/u/cur/1.M1:2,RS', './d/u/new/2.M2', './d/u/dovecot-uidlist']
    assert backup.maildir_restore_plan(members, existing) == ['./d/u/new/3.M3', './d/v/new/1.M1']
    # Re-running after the merge adds nothing.
    merged = existing + ['./d/u/new/3.M3', './d/v/new/1.M1']
    assert backup.maildir_restore_plan(members, merged) == []


def test_same_base_name_in_another_maildir_is_another_message():
    plan = backup.maildir_restore_plan(['./d/u/new/1.M1', './d/u/.Junk/new/1.M1'], ['./d/u/cur/1.M1:2,'])
    assert plan == ['./d/u/.Junk/new/1.M1']
    assert backup.maildir_message_count(['./d/u/new/1.M1', './d/u/cur/1.M1:2,S', './d/u/.Junk/new/1.M1', './d/u/x']) == 2


def test_blank_member_lines_are_ignored():
    assert backup.maildir_restore_plan(['', './d/u/new/1.M1', '  '], None) == ['./d/u/new/1.M1']


def _manifest(**members):
    return {'format': 1, 'members': [{'name': n, 'sha256': s, 'size': 1} for n, s in members.items()]}


def test_manifest_matches():
    manifest = _manifest(**{'db.sql': 'aa', 'dkim/example.com.mail.key': 'bb'})
    assert backup.backup_manifest_problems(manifest, {'db.sql': 'AA', 'dkim/example.com.mail.key': 'bb'}) == []


def test_manifest_problems_name_each_member():
    manifest = _manifest(**{'db.sql': 'aa', 'vmail.tar.gz': 'bb'})
    problems = backup.backup_manifest_problems(manifest, {'db.sql': 'ab', 'extra': 'cc', 'manifest.json': 'x'})
    assert any(p.startswith('db.sql: sha256 ab does not match') for p in problems)
    assert 'vmail.tar.gz is listed in the manifest but missing from the archive' in problems
    assert 'extra is in the archive but not in the manifest' in problems
    assert len(problems) == 3


def test_manifest_of_another_format_or_empty():
    assert 'format' in backup.backup_manifest_problems({'format': 2, 'members': [{'name': 'a', 'sha256': 'x'}]},
                                                       {'a': 'x'})[0]
    assert backup.backup_manifest_problems({'format': 1}, {}) == ['the manifest lists no members']
    assert backup.backup_manifest_problems([], {}) == ['manifest.json is not a JSON object']


def test_backup_members_are_relative_and_sorted():
    results = [{'stat': {'path': '/w/backup/vmail.tar.gz', 'checksum': 'b', 'size': 3}},
               {'stat': {'path': '/w/backup/dkim/k', 'checksum': 'a', 'size': 2}}]
    assert backup.backup_members(results, '/w/backup/') == [
        {'name': 'dkim/k', 'sha256': 'a', 'size': 2}, {'name': 'vmail.tar.gz', 'sha256': 'b', 'size': 3}]
    with pytest.raises(AnsibleFilterError):
        backup.backup_members(results, '/elsewhere')


def _container(service, state='running', name=None):
    return {'Names': ['/' + (name or 'mail-' + service)], 'State': state, 'ImageID': 'sha256:' + service,
            'Labels': {'org.maillab.stack': 'default', 'org.maillab.service': service},
            'Mounts': [{'Type': 'volume', 'Name': 'vmail_data', 'Destination': '/var/mail'},
                       {'Type': 'bind', 'Source': '/etc/maillab/default/tls', 'Destination': '/etc/maillab-tls'}]}


def test_stack_services_and_level():
    services = backup.maillab_stack_services([_container('smtp'), _container('imap', 'exited'), {'Labels': {}}])
    assert set(services) == {'smtp', 'imap'}
    assert services['smtp']['volumes'] == {'/var/mail': 'vmail_data'}
    assert services['smtp']['binds'] == {'/etc/maillab-tls': '/etc/maillab/default/tls'}
    assert services['imap']['running'] is False and services['imap']['name'] == 'mail-imap'
    assert backup.maillab_stack_level(services, LEVELS) == '2'
    assert backup.maillab_stack_level(LEVELS['challenge'], LEVELS) == 'challenge'
    assert backup.maillab_stack_level([], LEVELS) == ''
    assert backup.maillab_stack_level(['smtp', 'db'], LEVELS) == 'partial'


def test_containers_not_running_are_named():
    services = backup.maillab_stack_services([_container('smtp'), _container('imap', 'exited', 'mt4-mail-imap')])
    assert backup.maillab_stack_not_running(services, LEVELS['3'], 'mt4-') == [
        'mt4-mail-imap (exited)', 'mt4-mail-db (absent)', 'mt4-mail-admin (absent)']
    assert backup.maillab_stack_not_running(services, LEVELS['1']) == []


def test_without_secrets():
    users = [{'address': 'a@example.com', 'password': 'p', 'quota': 5}, {'address': 'b@example.com', 'password_hash': 'h'}]
    assert backup.without_secrets(users) == [{'address': 'a@example.com', 'quota': 5}, {'address': 'b@example.com'}]
