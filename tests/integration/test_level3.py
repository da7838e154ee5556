"""Level 3: SQL accounts, LMTP, TLS-only logins and submission."""

from __future__ import annotations

import imaplib
import os
import smtplib
import ssl
import subprocess
import time

import pytest

import mailclient
from mailclient import HOST, compose, env_port

pytestmark = pytest.mark.level3

PASSWORD = 'password'
# 150 bytes of ordinary text.
PROSE_LINE = ('Minutes of the planning meeting: the budget figures, the hiring plan and the notes on the '
              'new office are attached for review before Thursday.')


def db_sql(stack, query, user=None, password=None):
    """Run SQL in the database container (root over the socket, or as a user over TCP)."""
    argv = ['exec', stack.prefix + 'mail-db', 'mariadb', '-N', '-B', 'postfixadmin', '-e', query]
    if user:
        argv[3:3] = ['-h', '127.0.0.1', '-u', user, '-p' + password]
    return stack.docker(*argv, check=False)


def imaps_login(tls, user, password=PASSWORD):
    return mailclient.imaps_login(tls, user, password)


def imap_find(tls, user, text, timeout=15):
    imap = imaps_login(tls, user)
    try:
        return mailclient.wait_uids(imap, 'BODY', '"%s"' % text, timeout=timeout)
    finally:
        imap.logout()


def submit(tls, user, sender, rcpt, body, port_name='SUBMISSION'):
    smtp = smtplib.SMTP('localhost', env_port(port_name), timeout=15)
    smtp.starttls(context=tls)
    smtp.login(user, PASSWORD)
    try:
        return smtp.sendmail(sender, [rcpt], compose(sender, rcpt, 'level3', body))
    finally:
        smtp.quit()


def cli(stack, *args):
    return stack.docker('exec', '-u', 'www-data', stack.prefix + 'mail-admin', 'postfixadmin-cli', *args, check=False)


def test_plain_imap_login_refused_before_starttls(stack, tls):
    imap = imaplib.IMAP4('localhost', stack.imap_port, timeout=15)
    assert 'LOGINDISABLED' in imap.capabilities and 'STARTTLS' in imap.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        imap.login('user1@example.com', PASSWORD)
    imap.starttls(ssl_context=tls)
    assert imap.login('user1@example.com', PASSWORD)[0] == 'OK'
    imap.logout()


def test_auth_only_after_tls_on_submission_and_never_on_25(stack, tls):
    smtp = smtplib.SMTP('localhost', env_port('SUBMISSION'), timeout=15)
    smtp.ehlo()
    assert not smtp.has_extn('auth') and smtp.has_extn('starttls')
    code, _ = smtp.docmd('AUTH', 'PLAIN AHVzZXIxQGV4YW1wbGUuY29tAHBhc3N3b3Jk')
    assert code >= 500
    smtp.starttls(context=tls)
    smtp.ehlo()
    assert smtp.has_extn('auth')
    smtp.quit()
    mx = smtplib.SMTP(HOST, stack.smtp_port, timeout=15)
    mx.ehlo()
    assert mx.has_extn('starttls'), 'STARTTLS is offered on port 25'
    mx.starttls(context=ssl._create_unverified_context())
    mx.ehlo()
    assert not mx.has_extn('auth'), 'no AUTH on port 25, even after STARTTLS'
    mx.quit()


def test_wrong_password_refused(tls):
    smtp = smtplib.SMTP('localhost', env_port('SUBMISSION'), timeout=15)
    smtp.starttls(context=tls)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        smtp.login('user1@example.com', 'wrong-password')
    smtp.close()
    with pytest.raises(imaplib.IMAP4.error):
        imaps_login(tls, 'user1@example.com', 'wrong-password')


def test_no_relay_without_auth_on_submission(tls):
    smtp = smtplib.SMTP('localhost', env_port('SUBMISSION'), timeout=15)
    smtp.starttls(context=tls)
    smtp.ehlo()
    smtp.mail('test@example.com')
    code, text = smtp.rcpt('someone@elsewhere.example')
    assert code >= 500, text
    smtp.close()


def test_authenticated_user_cannot_send_as_another(tls, tag):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        submit(tls, 'user1@example.com', 'user2@example.com', 'user2@example.com', 'spoof ' + tag)
    code, text = refused.value.recipients['user2@example.com']
    assert code == 553 and b'not owned by user' in text


def test_submission_delivers_over_lmtp(tls, tag):
    submit(tls, 'user1@example.com', 'user1@example.com', 'user2@example.com', 'lmtp ' + tag)
    assert imap_find(tls, 'user2@example.com', 'lmtp ' + tag)


def test_passwords_are_strong_hashes(stack):
    rows = db_sql(stack, 'SELECT password FROM mailbox').stdout.split()
    assert rows and all(r.startswith('{BLF-CRYPT}$2y$10$') for r in rows), rows
    inspect = stack.docker('inspect', stack.smtp, stack.imap, stack.prefix + 'mail-db',
                           stack.prefix + 'mail-admin').stdout
    for secret in ('lab-mailreader-db', 'lab-postfixadmin-db', 'lab-admin-password', 'lab-setup-password'):
        assert secret not in inspect
    logs = ''.join(stack.docker('logs', c, check=False).stdout + stack.docker('logs', c, check=False).stderr
                   for c in (stack.smtp, stack.imap, stack.prefix + 'mail-db', stack.prefix + 'mail-admin'))
    assert 'lab-mailreader-db' not in logs and 'lab-admin-password' not in logs


def test_database_not_published_and_reader_cannot_write(stack):
    assert stack.docker('port', stack.prefix + 'mail-db').stdout.strip() == ''
    read = db_sql(stack, 'SELECT COUNT(*) FROM mailbox', 'mailreader', 'lab-mailreader-db')
    assert read.returncode == 0 and int(read.stdout) >= 2, read.stderr
    write = db_sql(stack, "UPDATE mailbox SET active = '0'", 'mailreader', 'lab-mailreader-db')
    assert write.returncode != 0 and 'denied' in write.stderr


def test_new_mailbox_served_at_once_and_deactivated_refused(stack, tls, tag):
    address = 'new%s@example.com' % tag[:6]
    add = cli(stack, 'mailbox', 'add', address, '--password', 'new-pass-123', '--password2', 'new-pass-123',
              '--name', 'New', '--quota', '0', '--active', '1', '--welcome-mail', '0')
    assert add.returncode == 0, add.stdout + add.stderr
    try:
        submit(tls, 'user1@example.com', 'user1@example.com', address, 'welcome ' + tag)
        imap = imaplib.IMAP4_SSL('localhost', env_port('IMAPS'), ssl_context=tls, timeout=15)
        imap.login(address, 'new-pass-123')
        imap.logout()
        # As the web interface's "deactivate" does.
        off = cli(stack, 'mailbox', 'update', address, '--active', '0')
        assert off.returncode == 0, off.stdout + off.stderr
        smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=15)
        smtp.ehlo()
        smtp.mail('test@example.com')
        code, text = smtp.rcpt(address)
        smtp.quit()
        assert 500 <= code < 600, text
    finally:
        cli(stack, 'mailbox', 'delete', address)


def rcpt_reply(stack, rcpt, sender='test@example.com'):
    """The server's answer to RCPT TO on port 25 (new connection each time)."""
    smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=30)
    try:
        smtp.ehlo()
        smtp.mail(sender)
        return smtp.rcpt(rcpt)
    finally:
        smtp.quit()


def admin_get(path):
    """Status and body of a page of the web interface, over HTTPS with the
    stack's CA (urllib raises on 5xx)."""
    import urllib.error
    import urllib.request
    context = ssl.create_default_context(cafile=os.environ['MAILLAB_CA'])
    try:
        with urllib.request.urlopen('https://localhost:%d%s' % (env_port('ADMIN'), path), timeout=30,
                                    context=context) as reply:
            return reply.status, reply.read().decode('utf-8', 'replace')
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode('utf-8', 'replace')


def test_database_outage_tempfails_and_recovers_in_seconds(stack, tls, tag):
    """With mail-db down, mail to a known domain is tempfailed (4xx), never
    bounced, also for a busy smtpd that keeps serving sessions, and the web
    interface says what is wrong. Once the database answers again, the same
    addresses are accepted within seconds (smtpd processes do not keep their
    cached lookup failures) and the mail arrives."""
    db = stack.prefix + 'mail-db'
    stack.docker('stop', db)
    try:
        # Steady traffic during the outage: many sessions, two addresses.
        for _ in range(10):
            for rcpt in ('user1@example.com', 'user2@example.com'):
                code, text = rcpt_reply(stack, rcpt)
                assert 400 <= code < 500, 'a known domain must be tempfailed, not bounced: %s %s' % (code, text)
        status, body = admin_get('/login.php')
        assert status >= 500 and 'database' in body and 'mail-db' in body, (status, body[:300])
    finally:
        stack.docker('start', db)
    stack.wait_database()
    back = time.monotonic()
    waiting = ['user1@example.com', 'user2@example.com']
    while waiting:
        for rcpt in list(waiting):
            code, text = rcpt_reply(stack, rcpt)
            if code == 250:
                waiting.remove(rcpt)
                continue
            assert 400 <= code < 500, 'refused for good after the outage: %s %s' % (code, text)
            assert time.monotonic() - back < 20, 'still %s %s 20 s after the database is back' % (code, text)
        time.sleep(0.5)
    print('both addresses accepted again %.1f s after the database was back' % (time.monotonic() - back))
    smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=30)
    smtp.sendmail('test@example.com', ['user1@example.com', 'user2@example.com'],
                  compose('test@example.com', ['user1@example.com', 'user2@example.com'], 'after outage',
                          'outage %s' % tag))
    smtp.quit()
    # Dovecot's watch reloads Dovecot once the database answers again (its
    # SQL client would otherwise wait minutes to reconnect); a login caught
    # by that reload is cut off, and a client logs in again, as these do.
    assert imap_find_reconnecting(tls, 'user1@example.com', 'outage ' + tag)
    assert imap_find_reconnecting(tls, 'user2@example.com', 'outage ' + tag)
    status, body = admin_get('/login.php')
    assert status == 200 and 'mail-db' not in body


def imap_find_reconnecting(tls, user, text, timeout=30):
    """imap_find, logging in again when the server closes the session."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return imap_find(tls, user, text)
        except (imaplib.IMAP4.abort, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def rcpt_with_size(stack, rcpt, size):
    """The answer to RCPT TO after MAIL FROM announced SIZE=size."""
    smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=30)
    try:
        smtp.ehlo()
        smtp.mail('test@example.com', ['SIZE=%d' % size])
        return smtp.rcpt(rcpt)
    finally:
        smtp.quit()


def test_over_quota_mailbox_refused_at_rcpt(stack, tls, tag):
    """A mailbox's quota comes from PostfixAdmin (MiB). Mail that would not
    fit is refused at RCPT with 552 (never accepted and bounced), smaller mail
    still fits, other mailboxes are not concerned, and raising the quota in
    the database lets the large mail in at once, without any restart."""
    address = 'quota%s@example.com' % tag[:6]
    add = cli(stack, 'mailbox', 'add', address, '--password', 'quota-pass-1', '--password2', 'quota-pass-1',
              '--name', 'Quota', '--quota', '1', '--active', '1', '--welcome-mail', '0')
    assert add.returncode == 0, add.stdout + add.stderr
    try:
        assert db_sql(stack, "SELECT quota FROM mailbox WHERE username = '%s'" % address).stdout.strip() == '1048576'
        # 600 KB of a 1 MiB quota.
        half = compose('test@example.com', address, 'fill', '\r\n'.join([PROSE_LINE] * 4000))
        smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=30)
        assert smtp.sendmail('test@example.com', [address], half) == {}
        smtp.quit()
        imap = imaplib.IMAP4_SSL('localhost', env_port('IMAPS'), ssl_context=tls, timeout=15)
        imap.login(address, 'quota-pass-1')
        deadline = time.monotonic() + 15
        while True:
            typ, data = imap.select('INBOX')
            if int(data[0]) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert int(data[0]) == 1, 'the first message was not delivered'
        typ, data = imap.getquotaroot('INBOX')
        imap.logout()
        assert typ == 'OK' and b'STORAGE' in data[1][0] and b'1024' in data[1][0], data
        code, text = rcpt_with_size(stack, address, len(half))
        assert code == 552 and b'full' in text, (code, text)
        assert rcpt_with_size(stack, address, 2000)[0] == 250
        assert rcpt_with_size(stack, 'user1@example.com', len(half))[0] == 250
        db_sql(stack, "UPDATE mailbox SET quota = 10485760 WHERE username = '%s'" % address)
        assert rcpt_with_size(stack, address, len(half))[0] == 250
    finally:
        cli(stack, 'mailbox', 'delete', address)


def test_burst_to_one_mailbox_without_deferrals(stack, tls, tag):
    """3,000 messages to one mailbox from 8 parallel clients are all delivered
    (each once), and Dovecot never answers "Too many concurrent deliveries":
    Postfix's parallel LMTP deliveries stay within Dovecot's per-user limit,
    so no message waits on Postfix's retry backoff."""
    import concurrent.futures
    address = 'burst%s@example.com' % tag[:6]
    add = cli(stack, 'mailbox', 'add', address, '--password', 'burst-pass-1', '--password2', 'burst-pass-1',
              '--name', 'Burst', '--quota', '0', '--active', '1', '--welcome-mail', '0')
    assert add.returncode == 0, add.stdout + add.stderr
    since = stack.docker('exec', stack.smtp, 'date', '+%s').stdout.strip()
    total, clients = 3000, 8

    def send(worker):
        smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=60)
        for n in range(worker, total, clients):
            smtp.sendmail('test@example.com', [address], compose('test@example.com', address, 'burst %d' % n,
                                                                 'burst %s %d' % (tag, n)))
        smtp.quit()

    try:
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, range(clients)))
        imap = imaplib.IMAP4_SSL('localhost', env_port('IMAPS'), ssl_context=tls, timeout=30)
        imap.login(address, 'burst-pass-1')
        deadline = time.monotonic() + 180
        while True:
            typ, data = imap.status('INBOX', '(MESSAGES)')
            count = int(data[0].split(b'MESSAGES ')[1].rstrip(b')'))
            if count >= total or time.monotonic() > deadline:
                break
            time.sleep(1)
        imap.logout()
        logs = stack.docker('logs', '--since', since, stack.smtp).stdout
        deferred = [line for line in logs.splitlines() if 'status=deferred' in line]
        assert count == total, '%d of %d delivered; deferred: %s' % (count, total, deferred[:3])
        assert 'Too many concurrent' not in logs
        assert deferred == []
    finally:
        cli(stack, 'mailbox', 'delete', address)


def test_admin_web_interface_answers_and_guards_setup(stack):
    """PostfixAdmin answers over HTTPS only (plain HTTP redirects there), its
    session cookie never travels in clear, and setup.php is not served once
    the setup password hash is in place."""
    import http.client
    status, body = admin_get('/login.php')
    assert status == 200 and 'fUsername' in body
    plain = http.client.HTTPConnection('127.0.0.1', env_port('ADMIN_HTTP'), timeout=30)
    plain.request('GET', '/login.php')
    reply = plain.getresponse()
    assert reply.status == 301
    assert reply.getheader('Location') == 'https://127.0.0.1:%d/login.php' % env_port('ADMIN')
    assert reply.getheader('Set-Cookie') is None
    secure = http.client.HTTPSConnection('localhost', env_port('ADMIN'), timeout=30,
                                         context=ssl.create_default_context(cafile=os.environ['MAILLAB_CA']))
    secure.request('GET', '/login.php')
    cookie = secure.getresponse().getheader('Set-Cookie') or ''
    assert 'postfixadmin_session=' in cookie
    assert {'secure', 'httponly', 'samesite=strict'} <= {part.strip().lower() for part in cookie.split(';')}
    for page in ('/setup.php', '/upgrade.php'):
        status, _ = admin_get(page)
        assert status == 403, '%s answered %d' % (page, status)
    cfg = stack.host(stack.prefix + 'mail-admin').file('/etc/postfixadmin/config.local.php')
    assert cfg.mode == 0o640 and cfg.group == 'www-data'
    assert "setup_password'] = '$2y$10$" in cfg.content_string


def test_inventory_alias_reaches_every_target(stack, tls, tag):
    found = db_sql(stack, "SELECT goto FROM alias WHERE address = 'team@example.com'").stdout.strip()
    if not found:
        pytest.skip('the inventory under test defines no team@example.com alias')
    assert set(found.split(',')) == {'user1@example.com', 'user2@example.com'}
    smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=15)
    smtp.sendmail('test@example.com', ['team@example.com'], compose('test@example.com', 'team@example.com', 'team',
                                                                   'team %s' % tag))
    smtp.quit()
    assert imap_find(tls, 'user1@example.com', 'team ' + tag)
    assert imap_find(tls, 'user2@example.com', 'team ' + tag)
