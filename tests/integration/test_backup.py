"""Backup and restore of the full stack (playbooks/backup.yml, playbooks/restore.yml).

One sequence, shared by the tests below through a module fixture:
  1. a mailbox with a quota and an alias made in PostfixAdmin, mail for them,
     queued mail (the scenario's smarthost never answers), one message on hold;
  2. the backup playbook runs while one thread sends steady mail on port 25
     and another keeps selecting and flagging INBOX over IMAPS (Dovecot moves
     and renames Maildir files under tar's feet);
  3. the stack is purged (containers, volumes, configuration directory with
     the DKIM keys and TLS material): a fresh machine;
  4. the restore playbook converges the stack and restores the archive.
Needs the full stack (molecule's default scenario) and MAILLAB_INVENTORY.
"""

from __future__ import annotations

import glob
import imaplib
import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import mailclient
from mailclient import HOST, compose, submit

pytestmark = pytest.mark.backup

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = 'password'
PROSE = ('The quarterly planning meeting moves to Thursday afternoon in the large room; '
         'please bring the budget figures, the hiring plan and your notes on the new office.')


def _ansible_playbook():
    """ansible-playbook of the Python running the tests (the project's .venv), else the PATH's."""
    beside = Path(sys.executable).parent / 'ansible-playbook'
    return str(beside) if beside.exists() else 'ansible-playbook'


def _playbook(playbook, *extra):
    inventory = os.environ.get('MAILLAB_INVENTORY')
    if not inventory:
        pytest.skip('MAILLAB_INVENTORY (the scenario inventory) is not set')
    cmd = [_ansible_playbook(), '-i', str(ROOT / 'inventories/lab/hosts.yml'), '-i', inventory, playbook, *extra]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200,
                         env={**os.environ, 'ANSIBLE_CONFIG': str(ROOT / 'ansible.cfg')})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run.stdout


def recap_changed(out):
    """The changed= count of every host in the PLAY RECAP, summed."""
    recap = out[out.rindex('PLAY RECAP'):]
    return sum(int(n) for n in re.findall(r'\bchanged=(\d+)', recap))


def cli(stack, *args):
    run = stack.docker('exec', '-u', 'www-data', stack.prefix + 'mail-admin', 'postfixadmin-cli', *args, check=False)
    assert run.returncode == 0 and 'error' not in run.stdout.lower(), run.stdout + run.stderr
    return run.stdout


def db(stack, query):
    return stack.docker('exec', stack.prefix + 'mail-db', 'mariadb', '-N', '-B', 'postfixadmin', '-e', query).stdout


def send25(stack, rcpt, subject, smtp=None):
    own = smtp is None
    smtp = smtp or smtplib.SMTP(HOST, stack.smtp_port, timeout=60)
    try:
        return smtp.sendmail('test@example.com', [rcpt], compose('test@example.com', rcpt, subject, PROSE))
    finally:
        if own:
            smtp.quit()


def imaps(tls, user, password=PASSWORD):
    return mailclient.imaps_login(tls, user, password, timeout=30)


def subjects(stack, user, prefix):
    """Subject lines starting with prefix in user's Maildir (INBOX and Junk), one per stored file."""
    local, domain = user.split('@')
    dirs = ' '.join('/var/mail/%s/%s/%s' % (domain, local, f) for f in stack.FOLDERS)
    out = stack.host(stack.smtp).run("grep -rh -m1 -- '^Subject: %s' %s 2>/dev/null" % (prefix, dirs))
    return [line.strip()[len('Subject: '):] for line in out.stdout.splitlines() if line.strip()]


def wait_subjects(stack, user, prefix, want, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        got = subjects(stack, user, prefix)
        if set(want) <= set(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def queue(stack, rcpt_domain):
    """(queue name, recipients) of the queued messages to rcpt_domain."""
    out = stack.docker('exec', stack.smtp, 'postqueue', '-j').stdout
    found = []
    for line in out.splitlines():
        entry = json.loads(line)
        rcpts = [r['address'] for r in entry.get('recipients', [])]
        if any(r.endswith('@' + rcpt_domain) for r in rcpts):
            found.append((entry['queue_name'], tuple(rcpts)))
    return sorted(found)


def server_state(stack):
    """What a backup must not change: containers, mail files, tables, queue."""
    containers = stack.docker('ps', '-a', '--filter', 'label=org.maillab.stack=' + (stack.prefix or 'default'),
                              '--format', '{{.ID}} {{.Names}} {{.Status}}').stdout
    started = {c.split()[1]: stack.docker('inspect', '-f', '{{.State.StartedAt}}', c.split()[0]).stdout
               for c in containers.splitlines()}
    files = stack.host(stack.smtp).run('find /var/mail /var/spool/postfix/hold /var/spool/postfix/deferred '
                                       '-type f -printf "%p %s %T@\\n" | sort').stdout
    tables = db(stack, "SELECT CONCAT('CHECKSUM TABLE ', GROUP_CONCAT(table_name)) FROM information_schema.tables "
                       "WHERE table_schema = 'postfixadmin'")
    checksums = stack.docker('exec', stack.prefix + 'mail-db', 'mariadb', '-N', '-B', 'postfixadmin', '-e',
                             tables.strip()).stdout
    return started, files, checksums


class Traffic:
    """Steady mail on port 25 (each message its own Subject), and an IMAP
    client that keeps selecting INBOX and flagging what it finds (Dovecot
    moves new/ to cur/ and renames files in cur/)."""

    def __init__(self, stack, tls, rcpt, prefix, rate=10):
        self.stack, self.tls, self.rcpt, self.prefix, self.rate = stack, tls, rcpt, prefix, rate
        self.acked = []  # (monotonic time of the 250, subject)
        self.errors = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _send(self):
        n, smtp = 0, None
        while not self.stop.is_set():
            subject = '%s %04d' % (self.prefix, n)
            try:
                smtp = smtp or smtplib.SMTP(HOST, self.stack.smtp_port, timeout=60)
                refused = send25(self.stack, self.rcpt, subject, smtp)
                if not refused:
                    self.acked.append((time.monotonic(), subject))
                n += 1
            except (smtplib.SMTPException, OSError) as exc:
                # A 4xx or a dropped connection: the message was not
                # acknowledged; a real MTA retries it later under the same name.
                self.errors.append('%s: %s' % (subject, exc))
                smtp = None
                time.sleep(0.5)
            time.sleep(1.0 / self.rate)
        if smtp:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass

    def _read(self):
        while not self.stop.is_set():
            try:
                client = imaps(self.tls, self.rcpt)
                while not self.stop.is_set():
                    client.select('INBOX')
                    typ, data = client.search(None, 'UNSEEN')
                    ids = data[0].split() if typ == 'OK' and data[0] else []
                    if ids:
                        client.store(b','.join(ids[:20]).decode(), '+FLAGS', '\\Seen')
                    time.sleep(0.2)
            except (imaplib.IMAP4.error, OSError) as exc:
                self.errors.append('imap: %s' % exc)
                time.sleep(0.5)


@pytest.fixture(scope='module')
def restored(stack, tls, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    config_dir = os.path.dirname(os.path.dirname(os.environ['MAILLAB_CA']))
    dkim_dir = os.environ.get('MAILLAB_DKIM_DIR') or os.path.join(config_dir, 'rspamd', 'dkim')
    ctx = {'tag': tag, 'box': 'bk%s@example.com' % tag, 'box_password': 'Bk-%s-pass9' % tag,
           'alias': 'bkteam%s@example.com' % tag, 'quota': 5, 'dkim_dir': dkim_dir}

    # 1. Accounts made in PostfixAdmin, mail, queued mail.
    cli(stack, 'mailbox', 'add', ctx['box'], '--password', ctx['box_password'], '--password2', ctx['box_password'],
        '--name', 'Backup test', '--quota', str(ctx['quota']), '--active', '1', '--welcome-mail', '0')
    cli(stack, 'alias', 'add', ctx['alias'], '--goto', '%s,user2@example.com' % ctx['box'], '--active', '1')
    before = ['bk %s pre %02d' % (tag, i) for i in range(20)]
    for subject in before:
        assert send25(stack, 'user1@example.com', subject) == {}
    assert send25(stack, ctx['box'], 'bk %s box' % tag) == {}
    assert set(before) <= set(wait_subjects(stack, 'user1@example.com', 'bk %s pre' % tag, before))
    # Half of them seen: Dovecot moves them to cur/ with flags in their names.
    client = imaps(tls, 'user1@example.com')
    client.select('INBOX')
    typ, data = client.search(None, 'SUBJECT', '"bk %s pre 0"' % tag)
    client.store(b','.join(data[0].split()).decode(), '+FLAGS', '\\Seen \\Flagged')
    client.logout()
    relayhost = stack.docker('exec', stack.smtp, 'postconf', '-h', 'relayhost').stdout.strip()
    ctx['queued'] = bool(relayhost)
    if ctx['queued']:
        # The scenario's smarthost never answers: mail to other domains waits in the queue.
        submit(tls, 'bk %s out' % tag, PROSE, rcpt='out%s@elsewhere.example' % tag)
        submit(tls, 'bk %s held' % tag, PROSE, rcpt='held%s@elsewhere.example' % tag)
        deadline = time.monotonic() + 30
        while len(queue(stack, 'elsewhere.example')) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        entries = [json.loads(line) for line in stack.docker('exec', stack.smtp, 'postqueue', '-j').stdout.splitlines()]
        held = [e['queue_id'] for e in entries
                if any(r['address'] == 'held%s@elsewhere.example' % tag for r in e['recipients'])]
        assert held, entries
        stack.docker('exec', stack.smtp, 'postsuper', '-h', held[0])
        ctx['queue_before'] = [q for q in queue(stack, 'elsewhere.example') if tag in ''.join(q[1])]
        assert len(ctx['queue_before']) == 2, ctx['queue_before']
    with open(glob.glob(os.path.join(dkim_dir, 'example.com.*.key'))[0], 'rb') as f:
        ctx['dkim_key'] = f.read()
    ctx['dkim_record'] = open(glob.glob(os.path.join(dkim_dir, 'example.com.*.txt'))[0]).read()

    # 2. The backup, while mail flows.
    backup_dir = tmp_path_factory.mktemp('backups')
    with Traffic(stack, tls, 'user1@example.com', 'bk %s flow' % tag) as traffic:
        time.sleep(3)
        started = t0 = time.monotonic()
        out = _playbook('playbooks/backup.yml', '-e', 'backup_dir=%s' % backup_dir)
        ctx['backup_seconds'] = time.monotonic() - t0
        time.sleep(2)
    ctx['acked_before'] = [s for t, s in traffic.acked if t < started]
    ctx['acked_all'] = [s for t, s in traffic.acked]
    ctx['traffic_errors'] = traffic.errors
    archives = sorted(backup_dir.glob('maillab-*.tar'))
    assert len(archives) == 1, archives
    ctx['archive'] = archives[0]
    ctx['backup_output'] = out
    # Everything acknowledged so far is stored (or queued) before the purge.
    wait_subjects(stack, 'user1@example.com', 'bk %s flow' % tag, ctx['acked_all'])

    # 3. A fresh machine: no container, no volume, no configuration, no keys.
    _playbook('playbooks/down.yml', '-e', 'mailserver_purge_volumes=true')
    shutil.rmtree(dkim_dir, ignore_errors=True)
    shutil.rmtree(os.path.join(config_dir, 'tls'), ignore_errors=True)
    assert not os.path.exists(dkim_dir)

    # 4. The restore converges the stack first.
    try:
        t0 = time.monotonic()
        ctx['restore_output'] = _playbook('playbooks/restore.yml', '-e', 'backup_archive=%s' % ctx['archive'])
        ctx['restore_seconds'] = time.monotonic() - t0
    except BaseException:
        # Leave a running stack for the tests that follow.
        subprocess.run([_ansible_playbook(), '-i', str(ROOT / 'inventories/lab/hosts.yml'), '-i',
                        os.environ['MAILLAB_INVENTORY'], 'playbooks/challenge.yml'], cwd=ROOT, capture_output=True)
        raise
    stack.wait_answering(stack.smtp_port)
    return ctx


def test_archive_is_private_and_named_after_the_stack(restored):
    archive = restored['archive']
    assert oct(archive.stat().st_mode & 0o777) == '0o600'
    assert re.match(r'maillab-[a-z0-9-]+-challenge-\d{8}T\d{6}Z-[0-9a-f]{6}\.tar$', archive.name), archive.name
    members = subprocess.run(['tar', '-tf', str(archive)], capture_output=True, text=True, check=True).stdout
    for member in ('manifest.json', 'inputs.json', 'db.sql', 'vmail.tar.gz', 'queue.tar.gz', 'tls/ca.key', 'dkim/'):
        assert member in members, member
    # No clear-text password in what the playbooks printed, in the secrets-free
    # inputs or in the manifest (the lab inventory's secrets all start with lab-).
    inputs, manifest = (subprocess.run(['tar', '-xOf', str(archive), './' + name], capture_output=True, text=True).stdout
                        for name in ('inputs.json', 'manifest.json'))
    assert '"address"' in inputs and 'password' not in inputs and 'password' not in manifest
    for text in (restored['backup_output'], restored['restore_output'], inputs, manifest):
        assert restored['box_password'] not in text and not re.search(r'lab-[a-z]+-(db|password|view|admin)', text)
    print('backup took %.1f s, archive %d bytes; restore took %.1f s'
          % (restored['backup_seconds'], archive.stat().st_size, restored['restore_seconds']))


def test_every_message_acknowledged_before_the_backup_is_back_once(stack, restored, tls):
    tag = restored['tag']
    pre = ['bk %s pre %02d' % (tag, i) for i in range(20)]
    want = pre + restored['acked_before']
    assert len(restored['acked_before']) >= 10, restored['traffic_errors'][:5]
    got = wait_subjects(stack, 'user1@example.com', 'bk %s ' % tag, want, timeout=60)
    missing = sorted(set(want) - set(got))
    duplicated = sorted({s for s in got if got.count(s) > 1})
    assert not missing, 'lost by backup and restore: %s' % missing[:10]
    assert not duplicated, 'duplicated: %s' % duplicated[:10]
    # Messages acknowledged while the backup ran may or may not be in it, never twice.
    assert set(got) <= set(pre) | set(restored['acked_all'])
    # Flags survive: the seen and flagged ones are still seen and flagged.
    client = imaps(tls, 'user1@example.com')
    client.select('INBOX', readonly=True)
    typ, data = client.search(None, 'FLAGGED', 'SUBJECT', '"bk %s pre 0"' % tag)
    assert len(data[0].split()) == 10
    client.logout()


def test_mailbox_made_in_postfixadmin_logs_in_with_its_quota(restored, tls):
    client = imaps(tls, restored['box'], restored['box_password'])
    typ, data = client.getquotaroot('INBOX')
    assert typ == 'OK'
    limits = re.findall(rb'STORAGE \d+ (\d+)', b' '.join(x if isinstance(x, bytes) else b' '.join(x) for x in data))
    assert limits == [str(restored['quota'] * 1024).encode()], data
    client.select('INBOX', readonly=True)
    typ, data = client.search(None, 'SUBJECT', '"bk %s box"' % restored['tag'])
    assert len(data[0].split()) == 1
    client.logout()


def test_alias_made_in_postfixadmin_delivers(stack, restored):
    subject = 'bk %s alias' % restored['tag']
    assert send25(stack, restored['alias'], subject) == {}
    assert wait_subjects(stack, restored['box'], subject, [subject]) == [subject]
    assert wait_subjects(stack, 'user2@example.com', subject, [subject]) == [subject]


def test_queued_mail_is_queued_again_and_held_mail_still_held(stack, restored):
    if not restored['queued']:
        pytest.skip('no smarthost: mail to other domains is not kept in the queue here')
    assert [q for q in queue(stack, 'elsewhere.example') if restored['tag'] in ''.join(q[1])] == restored['queue_before']


def test_dkim_key_is_the_same_and_new_mail_verifies_with_the_published_record(restored, tls):
    import dkim
    key = glob.glob(os.path.join(restored['dkim_dir'], 'example.com.*.key'))
    assert len(key) == 1
    with open(key[0], 'rb') as f:
        assert f.read() == restored['dkim_key'], 'the DKIM key changed: the published record no longer verifies'
    line = restored['dkim_record']
    name, txt = line.split()[0], ''.join(re.findall(r'"([^"]*)"', line)).encode()
    subject = 'bk %s dkim' % restored['tag']
    assert submit(tls, subject, PROSE, rcpt='user2@example.com') == {}
    client = imaps(tls, 'user2@example.com')
    deadline = time.monotonic() + 30
    raw = None
    while raw is None and time.monotonic() < deadline:
        client.select('INBOX', readonly=True)
        typ, data = client.search(None, 'SUBJECT', '"%s"' % subject)
        if data[0]:
            raw = client.fetch(data[0].split()[-1], '(BODY.PEEK[])')[1][0][1]
        else:
            time.sleep(0.5)
    client.logout()
    assert raw and b'DKIM-Signature:' in raw

    def dns(qname, timeout=5):
        return txt if qname.decode().rstrip('.') == name.rstrip('.') else None
    assert dkim.verify(raw, dnsfunc=dns)


def test_second_restore_changes_nothing_and_duplicates_nothing(stack, restored):
    tag = restored['tag']
    before = sorted(subjects(stack, 'user1@example.com', 'bk %s ' % tag))
    out = _playbook('playbooks/restore.yml', '-e', 'backup_archive=%s' % restored['archive'])
    assert recap_changed(out) == 0, out[out.rindex('PLAY RECAP'):]
    time.sleep(3)
    after = sorted(subjects(stack, 'user1@example.com', 'bk %s ' % tag))
    assert after == before
    if restored['queued']:
        assert [q for q in queue(stack, 'elsewhere.example') if tag in ''.join(q[1])] == restored['queue_before']


def test_second_backup_leaves_the_server_unchanged(stack, restored, tmp_path):
    state = server_state(stack)
    out = _playbook('playbooks/backup.yml', '-e', 'backup_dir=%s' % tmp_path)
    assert len(list(tmp_path.glob('maillab-*.tar'))) == 1
    assert server_state(stack) == state
    assert 'mail-' in out
