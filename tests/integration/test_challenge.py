"""The full stack: Rspamd in front of delivery, DKIM, learning, failures."""

from __future__ import annotations

import glob
import json
import os
import re
import smtplib
import time
import urllib.error
import urllib.request

import pytest

import mailclient
from mailclient import HOST, compose, env_port, submit

pytestmark = pytest.mark.challenge

PASSWORD = 'password'
GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
# Rspamd's add-header variant of GTUBE (the lab inventory enables it).
GTUBE_ADD_HEADER = 'YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
# Enough words for Rspamd's Bayes classifier to learn from (at least 11 tokens).
PROSE = ('The quarterly planning meeting moves to Thursday afternoon in the large room; '
         'please bring the budget figures, the hiring plan and your notes on the new office.')


def send25(stack, subject, body, rcpt='user1@example.com'):
    smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=60)
    try:
        return smtp.sendmail('test@example.com', [rcpt], compose('test@example.com', rcpt, subject, body))
    finally:
        smtp.quit()


def imap(tls, user='user1@example.com'):
    return mailclient.imaps_login(tls, user, PASSWORD, timeout=30)


def find(tls, subject, user='user1@example.com', mailbox='INBOX', timeout=20):
    """Raw messages with this subject in the mailbox, waiting up to timeout s."""
    client = imap(tls, user)
    try:
        uids = mailclient.wait_uids(client, 'HEADER', 'Subject', '"%s"' % subject, mailbox=mailbox,
                                    timeout=timeout, interval=0.3)
        return mailclient.fetch_raw(client, uids)
    finally:
        client.logout()


def controller(path, password=None, data=None):
    request = urllib.request.Request('http://127.0.0.1:%d%s' % (env_port('RSPAMD'), path), data=data)
    if password:
        request.add_header('Password', password)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def stats():
    status, body = controller('/stat', os.environ['MAILLAB_RSPAMD_PASSWORD'])
    assert status == 200, body
    return json.loads(body)


def learns():
    """Learned messages per class (Rspamd refreshes these every few seconds)."""
    return {s['symbol']: s['revision'] for s in stats()['statfiles']}


def wait_for(predicate, what, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def wait_rspamd(stack, timeout=120):
    """Until Postfix gets answers from Rspamd's milter again (a clean message goes through)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            send25(stack, 'probe %f' % time.time(), 'probe')
            return
        except (smtplib.SMTPException, OSError):
            assert time.monotonic() < deadline, 'Rspamd is not back %s s after its start' % timeout
            time.sleep(1)


def test_gtube_refused_at_data_on_25_and_on_submission(stack, tls, tag):
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send25(stack, 'gtube ' + tag, GTUBE)
    assert 500 <= refused.value.smtp_code < 600, refused.value
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(tls, 'gtube sub ' + tag, GTUBE)
    assert 500 <= refused.value.smtp_code < 600, refused.value
    assert find(tls, 'gtube ' + tag, timeout=2) == []


def test_clean_mail_delivered_with_rspamd_headers(stack, tls, tag):
    assert send25(stack, 'clean ' + tag, PROSE) == {}
    found = find(tls, 'clean ' + tag)
    assert len(found) == 1
    headers = found[0].split(b'\r\n\r\n', 1)[0]
    # A client on the published port comes from the Docker gateway address:
    # the headers must be there all the same.
    assert b'X-Spamd-Result: default: False' in headers
    assert b'X-Rspamd-Queue-Id:' in headers
    assert b'X-Spam: Yes' not in headers


def test_add_header_verdict_lands_in_junk(stack, tls, tag):
    assert send25(stack, 'junk ' + tag, GTUBE_ADD_HEADER) == {}
    junk = find(tls, 'junk ' + tag, mailbox='Junk')
    assert len(junk) == 1 and b'X-Spam: Yes' in junk[0]
    assert find(tls, 'junk ' + tag, timeout=1) == []


def test_seed_dialogue_message_still_delivered(stack, dialogue, tag):
    """The lab's own telnet dialogue (no From, Date or Message-ID) still gets
    through Rspamd; it may be marked, so it may land in Junk."""
    smtp = dialogue(stack.smtp_port)
    assert smtp.reply()[0] == 220
    assert smtp.cmd('HELO client')[0] == 250
    assert smtp.cmd('MAIL FROM: <test@example.com>')[0] == 250
    assert smtp.cmd('RCPT TO: <user1@example.com>')[0] == 250
    assert smtp.cmd('DATA')[0] == 354
    smtp.send(b'Subject: Test Docker\r\nCeci est un test. %s\r\n.\r\n' % tag.encode())
    assert smtp.reply()[0] == 250
    smtp.cmd('QUIT')
    assert len(stack.find_message('user1@example.com', 'Ceci est un test. ' + tag, timeout=20)) == 1


def test_controller_needs_its_password_and_listens_on_loopback(stack):
    assert controller('/stat')[0] in (401, 403)
    assert controller('/stat', 'wrong-password')[0] in (401, 403)
    status, body = controller('/stat', os.environ['MAILLAB_RSPAMD_PASSWORD'])
    assert status == 200 and 'scanned' in json.loads(body)
    # The read-only password cannot train the filter.
    assert controller('/learnspam', os.environ['MAILLAB_RSPAMD_PASSWORD'], PROSE.encode())[0] in (401, 403)
    ports = stack.docker('port', stack.prefix + 'mail-rspamd').stdout.split()
    assert ports and all(p.startswith('127.0.0.1:') for p in ports if ':' in p and p[0].isdigit()), ports
    assert stack.docker('port', stack.prefix + 'mail-redis').stdout.strip() == ''
    # Only hashes on disk.
    conf = stack.host(stack.prefix + 'mail-rspamd').file('/etc/rspamd/local.d/worker-controller.inc').content_string
    assert os.environ['MAILLAB_RSPAMD_PASSWORD'] not in conf and 'password = "$1$' in conf


def test_submission_is_dkim_signed_with_the_published_key(tls, tag):
    import dkim
    records = glob.glob(os.path.join(os.environ['MAILLAB_DKIM_DIR'], 'example.com.*.txt'))
    assert len(records) == 1, records
    line = open(records[0]).read()
    name = line.split()[0]
    # A zone file line: the value in quoted strings of at most 255 characters.
    strings = re.findall(r'"([^"]*)"', line)
    assert all(len(s) <= 255 for s in strings) and len(strings) >= 2, line
    txt = ''.join(strings).encode()
    assert submit(tls, 'dkim ' + tag, PROSE) == {}
    found = find(tls, 'dkim ' + tag, user='user2@example.com')
    assert len(found) == 1 and b'DKIM-Signature:' in found[0]

    def dns(qname, timeout=5):
        return txt if qname.decode().rstrip('.') == name.rstrip('.') else None
    assert dkim.verify(found[0], dnsfunc=dns)
    # Tampering breaks it: the test can fail.
    assert not dkim.verify(found[0].replace(b'quarterly', b'QUARTERLY'), dnsfunc=dns)


def test_moving_into_and_out_of_junk_trains_rspamd(stack, tls, tag):
    """IMAPSieve: a move into Junk trains Rspamd (the controller's learned
    counter), a move out of Junk retrains the message as ham (the Bayes
    classes' counters, which Rspamd refreshes within about 20 s)."""
    before, learned = learns(), stats()['learned']
    assert send25(stack, 'learn ' + tag, PROSE + ' ' + tag) == {}
    assert len(find(tls, 'learn ' + tag)) == 1
    client = imap(tls)
    try:
        client.select('INBOX')
        typ, data = client.uid('SEARCH', 'HEADER', 'Subject', '"learn %s"' % tag)
        assert client.uid('MOVE', data[0].split()[0], 'Junk')[0] == 'OK'
        wait_for(lambda: stats()['learned'] >= learned + 1, 'moving into Junk did not train Rspamd', 30)
        client.select('Junk')
        typ, data = client.uid('SEARCH', 'HEADER', 'Subject', '"learn %s"' % tag)
        assert client.uid('MOVE', data[0].split()[0], 'INBOX')[0] == 'OK'
        wait_for(lambda: stats()['learned'] >= learned + 2, 'moving out of Junk did not train Rspamd', 30)
    finally:
        client.logout()
    wait_for(lambda: learns()['BAYES_HAM'] > before['BAYES_HAM'],
             'the message moved out of Junk was not learned as ham', 60)


def test_rspamd_down_tempfails_and_mail_arrives_once_after(stack, tls, tag):
    rspamd = stack.prefix + 'mail-rspamd'
    stack.docker('stop', rspamd)
    try:
        with pytest.raises(smtplib.SMTPResponseException) as deferred:
            send25(stack, 'while down ' + tag, PROSE)
        code = deferred.value.smtp_code
        assert 400 <= code < 500, 'must be tempfailed, never accepted unscanned or bounced: %s' % deferred.value
    finally:
        stack.docker('start', rspamd)
    wait_rspamd(stack)
    # The sender retries, as a real MTA would after a 4xx.
    assert send25(stack, 'while down ' + tag, PROSE) == {}
    found = find(tls, 'while down ' + tag)
    assert len(found) == 1 and b'X-Spamd-Result:' in found[0]


def _redis_answers(stack, redis):
    """Redis answers a ping (NOAUTH counts: it wants Rspamd's password)."""
    run = stack.docker('exec', redis, 'redis-cli', 'ping', check=False)
    reply = (run.stdout + run.stderr).strip()
    return reply.startswith('PONG') or 'NOAUTH' in reply


def test_redis_down_loses_no_mail(stack, tls, tag):
    redis = stack.prefix + 'mail-redis'
    stack.docker('stop', redis)
    try:
        assert send25(stack, 'no redis ' + tag, PROSE) == {}
        assert len(find(tls, 'no redis ' + tag, timeout=60)) == 1
    finally:
        stack.docker('start', redis)
    deadline = time.monotonic() + 60
    while not _redis_answers(stack, redis):
        assert time.monotonic() < deadline, 'mail-redis does not answer 60 s after its start'
        time.sleep(0.5)
