"""Level 2: Dovecot serves the Maildirs that Postfix writes."""

from __future__ import annotations

import imaplib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import mailclient

pytestmark = pytest.mark.level2

ROOT = Path(__file__).resolve().parents[2]


def imap_login(stack, user='user1', password='password'):
    return mailclient.imap_login(stack.imap_port, user, password)


def wait_login(stack, timeout=60):
    """Wait until user1 can log in over IMAP (the service, not only its greeting, is back)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            imap_login(stack).logout()
            return
        except (OSError, imaplib.IMAP4.error):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def empty_inbox(stack, user):
    imap = imap_login(stack, user)
    _typ, data = imap.select('INBOX')
    if int(data[0]):
        imap.store('1:*', '+FLAGS.SILENT', r'(\Deleted)')
        imap.expunge()
    imap.logout()


def send(stack, dialogue, rcpt, subject, body='Ceci est un test.'):
    d = dialogue(stack.smtp_port)
    assert d.reply()[0] == 220
    for command in ('HELO client', 'MAIL FROM: <test@example.com>', 'RCPT TO: <%s>' % rcpt):
        code, text = d.cmd(command)
        assert code == 250, text
    assert d.cmd('DATA')[0] == 354
    d.send('Subject: %s\r\n%s\r\n.\r\n' % (subject, body))
    code, text = d.reply()
    assert code == 250, text
    d.cmd('QUIT')


def search(stack, user, text, password='password', timeout=15):
    """UIDs of user's INBOX messages whose body contains text (waits up to timeout)."""
    imap = imap_login(stack, user, password)
    try:
        return mailclient.wait_uids(imap, 'BODY', '"%s"' % text, timeout=timeout)
    finally:
        imap.logout()


def test_seed_dialogues_verbatim(stack, dialogue):
    """The lab's SMTP dialogue, then its IMAP dialogue exactly as written."""
    empty_inbox(stack, 'user1')
    d = dialogue(stack.smtp_port)
    assert d.reply()[0] == 220
    for command, expected in (('HELO client', 250), ('MAIL FROM: <test@example.com>', 250),
                              ('RCPT TO: <user1@example.com>', 250), ('DATA', 354)):
        code, text = d.cmd(command)
        assert code == expected, text
    d.send('Subject: Test Docker\r\nCeci est un test.\r\n.\r\n')
    assert d.reply()[0] == 250
    assert d.cmd('QUIT')[0] == 221
    assert search(stack, 'user1', 'Ceci est un test'), 'message never visible over IMAP'

    i = dialogue(stack.imap_port)
    assert i.line().startswith('* OK')
    i.send('a1 LOGIN user1 password\r\n')
    assert i.until_tagged('a1')[-1].startswith('a1 OK'), 'a1 LOGIN user1 password refused'
    i.send('a2 SELECT INBOX\r\n')
    lines = i.until_tagged('a2')
    assert lines[-1].startswith('a2 OK') and '* 1 EXISTS' in lines
    i.send('a3 FETCH 1 BODY[]\r\n')
    fetched = '\n'.join(i.until_tagged('a3'))
    assert 'Subject: Test Docker' in fetched and 'Ceci est un test.' in fetched
    assert 'a3 OK' in fetched
    i.send('a4 LOGOUT\r\n')
    assert i.until_tagged('a4')[-1].startswith('a4 OK')


def test_wrong_password_is_refused(stack):
    with pytest.raises(imaplib.IMAP4.error, match='AUTHENTICATIONFAILED'):
        imap_login(stack, 'user1', 'not-the-password')
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(stack, 'nobody', 'password')


def test_users_see_only_their_own_mail(stack, dialogue, tag):
    send(stack, dialogue, 'user1@example.com', 'private', 'private ' + tag)
    assert search(stack, 'user1', 'private ' + tag)
    assert search(stack, 'user2', 'private ' + tag, timeout=1) == []


def test_no_plaintext_password_on_disk(stack):
    users = stack.host(stack.imap).file('/etc/dovecot/users')
    assert users.mode == 0o640 and users.user == 'root' and users.group == 'dovecot'
    content = users.content_string
    assert 'user1@example.com:{BLF-CRYPT}$2' in content
    assert ':password' not in content
    inspect = stack.docker('inspect', stack.imap, stack.smtp).stdout
    assert '"password"' not in inspect and ':password' not in inspect


def test_restart_loses_no_mail(stack, dialogue, tag):
    send(stack, dialogue, 'user2@example.com', 'before restart', 'restart ' + tag)
    assert len(search(stack, 'user2', 'restart ' + tag)) == 1
    stack.docker('restart', stack.smtp, stack.imap)
    stack.wait_answering(stack.smtp_port)
    wait_login(stack)
    assert len(search(stack, 'user2', 'restart ' + tag)) == 1


def test_mail_accepted_while_imap_is_down_is_read_after(stack, dialogue, tag):
    stack.docker('stop', stack.imap)
    try:
        for n in range(20):
            send(stack, dialogue, 'user2@example.com', 'while down %d' % n, 'down %s %02d' % (tag, n))
    finally:
        stack.docker('start', stack.imap)
    wait_login(stack)
    deadline = time.monotonic() + 30
    while len(search(stack, 'user2', 'down ' + tag)) < 20 and time.monotonic() < deadline:
        time.sleep(0.5)
    uids = search(stack, 'user2', 'down ' + tag)
    assert len(uids) == 20, 'only %d of 20 messages readable' % len(uids)
    logs = stack.docker('logs', '--since', '5m', stack.smtp).stdout
    assert 'status=bounced' not in logs


def _playbook(stack, *extra, playbook='playbooks/level2.yml'):
    inventory = os.environ.get('MAILLAB_INVENTORY')
    if not inventory:
        pytest.skip('MAILLAB_INVENTORY (the scenario inventory) is not set')
    cmd = ['ansible-playbook', '-i', str(ROOT / 'inventories/lab/hosts.yml'), '-i', inventory,
           playbook, *extra]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, 'ANSIBLE_CONFIG': str(ROOT / 'ansible.cfg')})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return run.stdout


def test_users_as_code_add_and_remove_without_restart(stack, dialogue, tag):
    started = {c: stack.docker('inspect', '-f', '{{.State.StartedAt}}', c).stdout for c in (stack.smtp, stack.imap)}
    lab = [{'address': 'user1@example.com', 'password': 'password'},
           {'address': 'user2@example.com', 'password': 'password'}]
    user3 = {'address': 'user3@example.com', 'password': 'third-pass-%s' % tag}
    out = _playbook(stack, '-e', json.dumps({'mailserver_users': lab + [user3]}))
    assert 'third-pass' not in out, 'a password appeared in the playbook output'
    send(stack, dialogue, 'user3@example.com', 'welcome', 'welcome ' + tag)
    assert search(stack, 'user3', 'welcome ' + tag, password=user3['password'])

    _playbook(stack, '-e', json.dumps({'mailserver_users': lab + [dict(user3, state='absent')]}))
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(stack, 'user3', user3['password'])
    d = dialogue(stack.smtp_port)
    d.reply()
    d.cmd('HELO client')
    d.cmd('MAIL FROM: <test@example.com>')
    assert d.cmd('RCPT TO: <user3@example.com>')[0] == 550
    kept = stack.maildir_files('user3@example.com', container=stack.imap)
    assert kept, 'the removed user\'s mail must stay on the volume'
    after = {c: stack.docker('inspect', '-f', '{{.State.StartedAt}}', c).stdout for c in (stack.smtp, stack.imap)}
    assert after == started, 'adding or removing a user restarted a container'
    # Back to the inventory's users; nothing else changes.
    _playbook(stack)


def test_going_down_and_up_a_level_keeps_the_mail(stack, dialogue, tag):
    send(stack, dialogue, 'user1@example.com', 'levels', 'levels ' + tag)
    assert search(stack, 'user1', 'levels ' + tag)
    _playbook(stack, playbook='playbooks/level1.yml')
    names = stack.docker('ps', '-a', '--format', '{{.Names}}').stdout.split()
    assert stack.imap not in names and stack.smtp in names, 'level 1 runs Postfix alone'
    # Mail keeps arriving at level 1, into the same volume.
    send(stack, dialogue, 'user1@example.com', 'at level 1', 'level one ' + tag)
    _playbook(stack)
    stack.wait_answering(stack.imap_port)
    assert search(stack, 'user1', 'levels ' + tag), 'mail stored before going down is gone'
    assert search(stack, 'user1', 'level one ' + tag), 'mail stored at level 1 is not served at level 2'


def test_alias_reaches_every_target(stack, dialogue, tag):
    if 'team@example.com' not in stack.host(stack.smtp).file('/etc/postfix/maillab/virtual_aliases').content_string:
        pytest.skip('the inventory under test defines no team@example.com alias')
    send(stack, dialogue, 'team@example.com', 'alias', 'alias ' + tag)
    assert len(search(stack, 'user1', 'alias ' + tag)) == 1
    assert len(search(stack, 'user2', 'alias ' + tag)) == 1
