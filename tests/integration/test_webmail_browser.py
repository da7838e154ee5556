"""The full stack's webmail as its users meet it: a real browser (Debian's
chromium driven by Playwright) logs into Roundcube at the HTTPS entry's
/webmail/, reads a message, sends one (it arrives DKIM-signed), makes a Sieve
filter that files mail into a folder, marks a message as spam (Rspamd
learns it) and changes the password (the old one stops working at once).
Screenshots of each step land in MAILLAB_ARTIFACTS (results/ by default)."""

from __future__ import annotations

import glob
import imaplib
import json
import os
import plistlib
import smtplib
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

import mailclient
from mailclient import HOST, ManageSieve, compose, dkim_dns, env_port
from test_level3_browser import CHROMIUM, server_spki

pytestmark = pytest.mark.challenge

ROOT = Path(__file__).resolve().parents[2]
USER, OTHER, PASSWORD = 'user1@example.com', 'user2@example.com', 'password'
PROSE = ('The quarterly planning meeting moves to Thursday afternoon in the large room; '
         'please bring the budget figures, the hiring plan and your notes on the new office.')


def learned():
    """Rspamd's count of learned messages (its controller's /stat)."""
    request = urllib.request.Request('http://127.0.0.1:%d/stat' % env_port('RSPAMD'))
    request.add_header('Password', os.environ['MAILLAB_RSPAMD_PASSWORD'])
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())['learned']


def send25(stack, rcpt, subject, body=PROSE):
    smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=60)
    try:
        smtp.sendmail('colleague@example.com', [rcpt], compose('colleague@example.com', rcpt, subject, body))
    finally:
        smtp.quit()


def set_password(stack, address, password):
    """What an administrator does in PostfixAdmin (restores the lab password)."""
    run = subprocess.run(['docker', 'exec', '-i', '-u', 'www-data', stack.prefix + 'mail-admin', 'maillab-pfa-cli',
                          'mailbox', 'update', address, '--password', '@stdin', '--password2', '@stdin'],
                         input='%s\n%s\n' % (password, password), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and 'error' not in run.stdout.lower(), run.stdout + run.stderr


def remove_filters(tls):
    """Deactivate and delete the Sieve scripts the browser made."""
    session = ManageSieve(env_port('MANAGESIEVE'))
    try:
        session.starttls(tls)
        session.authenticate(USER, PASSWORD)
        _status, lines, _line = session.command('LISTSCRIPTS')
        session.command('SETACTIVE ""')
        for line in lines:
            if line.startswith('"'):
                session.command('DELETESCRIPT "%s"' % line.split('"')[1])
    finally:
        session.close()


def test_a_user_reads_sends_filters_marks_spam_and_changes_the_password_in_roundcube(stack, tls, tag):
    import dkim
    port = env_port('ADMIN')
    base = 'https://localhost:%d/webmail/' % port
    shots = Path(os.environ.get('MAILLAB_ARTIFACTS') or ROOT / 'results' / 'screenshots')
    shots.mkdir(parents=True, exist_ok=True)
    folder = 'Projects-%s' % tag[:6]
    new_password = 'Webmail-%s-2026' % tag[:6]
    assert os.path.exists(CHROMIUM), 'Debian chromium is missing: make deps installs it'

    # Mail waiting for the user, and a folder of theirs (made by another mail program).
    send25(stack, USER, 'Agenda %s' % tag, 'Agenda for Thursday: %s. %s' % (tag, PROSE))
    send25(stack, USER, 'Cheap offer %s' % tag)
    imap = mailclient.imaps_login(tls, USER, PASSWORD)
    imap.create(folder)
    imap.subscribe(folder)
    assert mailclient.wait_uids(imap, 'SUBJECT', '"Cheap offer %s"' % tag), 'the mail to read did not arrive'
    imap.logout()
    before = learned()

    def shot(page, name):
        page.screenshot(path=str(shots / ('webmail-%s.png' % name)), full_page=True)

    changed = False
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                '--no-sandbox', '--ignore-certificate-errors-spki-list=' + server_spki(port)])
            try:
                page = browser.new_page(viewport={'width': 1280, 'height': 900})
                # Log in with the short name, as the lab's telnet dialogue does.
                page.goto(base)
                page.fill('#rcmloginuser', 'user1')
                page.fill('#rcmloginpwd', PASSWORD)
                page.click('#rcmloginsubmit')
                page.wait_for_load_state('networkidle')
                shot(page, '1-inbox')
                assert '_task=mail' in page.url, 'login refused'

                # Read the waiting message.
                page.locator('#messagelist tr', has_text='Agenda %s' % tag).first.click()
                body = page.frame_locator('#messagecontframe').locator('#messagebody')
                body.wait_for(timeout=15000)
                assert 'Agenda for Thursday: %s' % tag in body.inner_text()
                shot(page, '2-read')

                # Mark the other one as spam: it moves to Junk, and Rspamd learns it.
                page.locator('#messagelist tr', has_text='Cheap offer %s' % tag).first.click()
                page.wait_for_timeout(500)
                page.locator('#toolbar-menu a.junk, a.junk').first.click()
                page.wait_for_timeout(1500)
                shot(page, '3-junk')

                # Write to the other lab user.
                page.goto(base + '?_task=mail&_action=compose')
                page.wait_for_load_state('networkidle')
                page.locator('.recipient-input input[type=text]').first.fill(OTHER)
                page.fill('#compose-subject', 'From the webmail %s' % tag)
                page.fill('#composebody', PROSE)
                shot(page, '4-compose')
                page.click('button.send')
                page.wait_for_url('**/?_task=mail*', timeout=30000)
                page.wait_for_load_state('networkidle')

                # A filter: mail about the project goes into its folder.
                page.goto(base + '?_task=settings&_action=plugin.managesieve')
                page.wait_for_load_state('networkidle')
                page.click('a.create[title="Add filter"]')
                form = page.frame_locator('iframe[name="filter-box"]')
                form.locator('#_name').fill('Project mail')
                form.locator('input[name="_rule_target[0][]"]').fill('project-%s' % tag)
                form.locator('#action_mailbox0').select_option(label=folder)
                shot(page, '5-filter')
                form.locator('button.submit').click()
                page.wait_for_timeout(1500)
                shot(page, '6-filter-saved')

                # Settings > Mail programs: the server settings, and the Apple profile.
                page.goto(base + '?_task=settings&_action=plugin.maillab_devices')
                page.wait_for_load_state('networkidle')
                assert 'mail.%s:%d' % (stack.domain, env_port('IMAPS')) in page.inner_text('#maillab-devices')
                shot(page, '7-devices')
                with page.expect_download() as download:
                    page.click('#maillab-mobileconfig')
                profile = plistlib.loads(Path(download.value.path()).read_bytes())
                assert profile['PayloadContent'][0]['EmailAddress'] == USER

                # A new password (the plugin's rules: 10 characters or more).
                page.goto(base + '?_task=settings&_action=plugin.password')
                page.wait_for_load_state('networkidle')
                page.fill('#curpasswd', PASSWORD)
                page.fill('#newpasswd', new_password)
                page.fill('#confpasswd', new_password)
                page.click('button.submit')
                page.wait_for_timeout(2000)
                shot(page, '8-password')
                changed = True
            finally:
                browser.close()

        # The old password stops working over IMAP at once, the new one works.
        with pytest.raises(imaplib.IMAP4.error):
            mailclient.imaps_login(tls, USER, PASSWORD).logout()
        imap = mailclient.imaps_login(tls, USER, new_password)
        try:
            # Marked as spam: in Junk now.
            assert mailclient.wait_uids(imap, 'SUBJECT', '"Cheap offer %s"' % tag, mailbox='Junk'), \
                'the message marked as spam is not in Junk'
            # The filter files mail about the project into its folder.
            send25(stack, USER, 'About project-%s' % tag)
            assert mailclient.wait_uids(imap, 'SUBJECT', 'project-%s' % tag, mailbox=folder, timeout=20), \
                'the filter made in the webmail did not file the message into %s' % folder
        finally:
            imap.logout()

        # Rspamd learned the message marked as spam.
        deadline = time.monotonic() + 20
        while learned() <= before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert learned() > before, 'marking a message as spam did not train Rspamd'

        # The message sent from the webmail arrived, signed with the domain's key.
        found = []
        other = mailclient.imaps_login(tls, OTHER, PASSWORD)
        try:
            uids = mailclient.wait_uids(other, 'SUBJECT', '"From the webmail %s"' % tag, timeout=20)
            found = mailclient.fetch_raw(other, uids)
        finally:
            other.logout()
        assert len(found) == 1, 'the message sent from the webmail did not arrive once'
        records = glob.glob(os.path.join(os.environ['MAILLAB_DKIM_DIR'], 'example.com.*.txt'))
        assert b'DKIM-Signature:' in found[0] and dkim.verify(found[0], dnsfunc=dkim_dns(records)), \
            'the message sent from the webmail is not DKIM-signed with the published key'
    finally:
        if changed:
            set_password(stack, USER, PASSWORD)
        remove_filters(tls)
        imap = mailclient.imaps_login(tls, USER, PASSWORD)
        imap.delete(folder)
        imap.logout()
