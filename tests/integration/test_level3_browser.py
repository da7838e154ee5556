"""Level 3: a real browser (Debian's chromium driven by Playwright) logs into
PostfixAdmin, creates a domain and a mailbox by filling only what a person
fills, and that mailbox receives mail at once (and its welcome mail); with the
full stack, its mail leaves DKIM-signed within the documented delay.
Screenshots of each step land in MAILLAB_ARTIFACTS (results/ by default)."""

from __future__ import annotations

import os
import smtplib
import ssl
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

import mailclient
from mailclient import compose

pytestmark = pytest.mark.level3

CHROMIUM = '/usr/bin/chromium'
ROOT = Path(__file__).resolve().parents[2]


def server_spki(port):
    """Base64 SHA-256 of the public key the HTTPS entry serves, once its
    certificate verifies against the stack's CA."""
    import base64
    import hashlib
    import socket

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    context = ssl.create_default_context(cafile=os.environ['MAILLAB_CA'])
    with socket.create_connection(('127.0.0.1', port), timeout=15) as sock:
        with context.wrap_socket(sock, server_hostname='localhost') as tls_sock:
            der = tls_sock.getpeercert(binary_form=True)
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_mailbox_created_in_the_web_ui_receives_mail_at_once(stack, tag):
    port = int(os.environ['MAILLAB_ADMIN_PORT'])
    shots = Path(os.environ.get('MAILLAB_ARTIFACTS') or ROOT / 'results' / 'screenshots')
    shots.mkdir(parents=True, exist_ok=True)
    domain = 'web%s.example' % tag[:6]
    address, password = 'webuser@' + domain, 'Web-pass-%s-42' % tag[:4]
    base = 'https://localhost:%d' % port
    assert os.path.exists(CHROMIUM), 'Debian chromium is missing: make deps installs it'
    with sync_playwright() as pw:
        # The browser trusts exactly the stack's certificate (its public key),
        # as a person would after importing the lab CA.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            '--no-sandbox', '--ignore-certificate-errors-spki-list=' + server_spki(port)])
        try:
            page = browser.new_page()
            page.goto(base + '/login.php')
            page.fill('#fUsername', 'admin@example.com')
            page.fill('#fPassword', 'lab-admin-password')
            page.click('button[name=submit]')
            page.wait_for_load_state()
            page.screenshot(path=str(shots / 'level3-1-logged-in.png'), full_page=True)
            assert 'login.php' not in page.url, 'login refused'

            page.goto(base + '/edit.php?table=domain')
            # Only what a person fills: the domain's name (its limits are the
            # form's defaults), then the address, the password twice and a name.
            page.fill('input[name="value[domain]"]', domain)
            page.click('input[name=submit]')
            page.wait_for_load_state()
            page.screenshot(path=str(shots / 'level3-2-domain.png'), full_page=True)

            page.goto(base + '/edit.php?table=mailbox&domain=' + domain)
            page.fill('input[name="value[local_part]"]', 'webuser')
            page.fill('input[name="value[password]"]', password)
            page.fill('input[name="value[password2]"]', password)
            page.fill('input[name="value[name]"]', 'Web User')
            page.click('input[name=submit]')
            page.wait_for_load_state()
            page.screenshot(path=str(shots / 'level3-3-mailbox.png'), full_page=True)
            assert 'too high' not in page.content(), 'the mailbox form refused its default quota'
            assert 'Unable to send' not in page.content(), 'the welcome mail could not be sent'
            page.goto(base + '/list-virtual.php?domain=' + domain)
            page.screenshot(path=str(shots / 'level3-4-list.png'), full_page=True)
            assert address in page.content(), 'the new mailbox is not listed'
        finally:
            browser.close()
    try:
        # At once: no restart, no reload.
        smtp = smtplib.SMTP('127.0.0.1', stack.smtp_port, timeout=15)
        smtp.sendmail('test@example.com', [address], compose('test@example.com', address, 'Test Docker', 'web ' + tag))
        smtp.quit()
        tls = ssl.create_default_context(cafile=os.environ['MAILLAB_CA'])
        imap = mailclient.imaps_login(tls, address, password, port=int(os.environ['MAILLAB_IMAPS_PORT']))
        uids = mailclient.wait_uids(imap, 'BODY', '"web %s"' % tag, timeout=15)
        # PostfixAdmin's welcome mail (its form sends one by default) arrived too.
        welcome = mailclient.wait_uids(imap, 'SUBJECT', 'Welcome', timeout=15)
        imap.logout()
        assert uids, 'the mailbox made in the web UI did not receive the message'
        assert welcome, 'the welcome mail of the new mailbox did not arrive'
        if stack.level == 'challenge':
            mail_from_the_new_domain_is_dkim_signed(tls, domain, address, password, tag)
    finally:
        for table, args in (('mailbox', [address]), ('domain', [domain])):
            stack.docker('exec', '-u', 'www-data', stack.prefix + 'mail-admin', 'postfixadmin-cli', table,
                         'delete', *args, check=False)
        for suffix in ('key', 'pub', 'txt'):
            key_file = Path(os.environ.get('MAILLAB_DKIM_DIR', '/nonexistent'), '%s.mail.%s' % (domain, suffix))
            if key_file.exists():
                key_file.unlink()


def mail_from_the_new_domain_is_dkim_signed(tls, domain, address, password, tag):
    """The full stack: the domain made in the web UI gets its DKIM key within
    the documented delay (rspamd_dkim_scan_interval, 30 s), with no re-run of
    the playbook, and mail its mailbox sends leaves signed with it."""
    import dkim
    record = Path(os.environ['MAILLAB_DKIM_DIR'], '%s.mail.txt' % domain)
    deadline = time.monotonic() + 45
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(1)
    assert record.exists(), 'no DKIM key for %s 45 s after it was made in PostfixAdmin' % domain
    body = ('The quarterly planning meeting moves to Thursday afternoon in the large room; '
            'please bring the budget figures and your notes, signed %s.' % tag)
    assert mailclient.submit(tls, 'signed ' + tag, body, user=address, password=password) == {}
    other = mailclient.imaps_login(tls, 'user2@example.com', 'password')
    try:
        found = mailclient.fetch_raw(other, mailclient.wait_uids(other, 'SUBJECT', '"signed %s"' % tag, timeout=20))
    finally:
        other.logout()
    assert len(found) == 1 and b'DKIM-Signature:' in found[0], 'the new mailbox\'s mail arrived unsigned'
    assert dkim.verify(found[0], dnsfunc=mailclient.dkim_dns(str(record))), \
        'the new domain\'s signature does not verify against the record written for it'
