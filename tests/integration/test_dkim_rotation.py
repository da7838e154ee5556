"""DKIM key rotation (rspamd_dkim_rotate_days), its periods set to seconds:
a next key is made and its record printed by make dns while the old key
still signs; signing moves to it only after the publish delay; the old key
stays published until its retire delay is over. Mail signed before and
after the switch verifies against the records make dns prints.

Marker rotation: the default scenario runs it after the full-stack tests (it
converges the stack twice: rotation on, then off again)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import dkim
import pytest

from mailclient import fetch_raw, imaps_login, submit, wait_uids
from test_dns import check_zone, make_dns, txt

pytestmark = pytest.mark.rotation

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = 'example.com'
# Seconds, as fractions of a day: a next key at 45 s of age, signing 20 s
# after it is made, the old key removed 30 s after the switch; checked every 3 s.
ROTATE, PUBLISH, RETIRE, SCAN = 45, 20, 30, 3


def converge(*extra):
    run = subprocess.run([sys.executable, '-m', 'ansible.cli.playbook', '-i', str(ROOT / 'inventories/lab/hosts.yml'),
                          '-i', os.environ['MAILLAB_INVENTORY'], 'playbooks/challenge.yml', *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1'))
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]


def days(seconds):
    return '%.8f' % (seconds / 86400)


def dkim_dir():
    return Path(os.environ['MAILLAB_DKIM_DIR'])


def selectors():
    return sorted(p.name[len(DOMAIN) + 1:-len('.key')] for p in dkim_dir().glob('%s.*.key' % DOMAIN))


def signing():
    """The selector selectors.map names for the domain ('' for the default)."""
    path = dkim_dir() / 'selectors.map'
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return next((sel for domain, sel in reversed(lines) if domain == DOMAIN), '')


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError('%s: not within %d s' % (what, timeout))


def signed_message(tls, subject):
    """Send as user1 over submission; the raw message as user2 receives it."""
    submit(tls, subject, 'signed during a rotation')
    imap = imaps_login(tls, 'user2@example.com', 'password')
    try:
        uids = wait_uids(imap, 'SUBJECT', subject, timeout=60) or wait_uids(imap, 'SUBJECT', subject,
                                                                            mailbox='Junk', timeout=5)
        assert uids, '%s did not arrive' % subject
        return fetch_raw(imap, uids[-1:])[0]
    finally:
        imap.logout()


def selector_of(raw):
    header = raw.split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace')
    found = re.search(r'DKIM-Signature:.*?\bs=([a-z0-9-]+)', header, re.S | re.I)
    assert found, 'the message is not DKIM-signed'
    return found.group(1)


def verifies_with_zone(raw, zone_path):
    zone = check_zone(DOMAIN, zone_path)

    def lookup(qname, timeout=5):
        name = qname.decode()
        found = txt(zone, name if name.endswith('.') else name + '.')
        return found[0].encode() if found else None
    return dkim.verify(raw, dnsfunc=lookup)


@pytest.fixture(scope='module')
def rotating(stack):
    """Rotation on (periods in seconds); afterwards off again, and the keys
    as they were (the tests after this one know one key per domain)."""
    saved = {p.name: (p.read_bytes(), p.stat()) for p in dkim_dir().iterdir() if p.is_file()}
    converge('-e', 'rspamd_dkim_rotate_days=%s' % days(ROTATE), '-e', 'rspamd_dkim_publish_days=%s' % days(PUBLISH),
             '-e', 'rspamd_dkim_retire_days=%s' % days(RETIRE), '-e', 'rspamd_dkim_scan_interval=%d' % SCAN)
    yield
    converge()
    for path in dkim_dir().iterdir():
        if path.is_file() and path.name not in saved:
            path.unlink()
    for name, (data, st) in saved.items():
        path = dkim_dir() / name
        path.write_bytes(data)
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, st.st_mode & 0o7777)
    # Rspamd reads the keys and selectors.map again.
    stack.docker('exec', stack.prefix + 'mail-rspamd', 'bash', '-c', 'kill -HUP 1')


def test_signing_moves_to_the_next_key_only_after_its_record_was_published(rotating, tls, tmp_path, tag):
    # The rotation runs since the converge: follow the next cycle from its start.
    known = set(selectors())
    # 1. A next key appears (the signing key is ROTATE s old), with its record.
    new = wait_for('a next key', lambda: [s for s in selectors() if s not in known], ROTATE + 2 * SCAN + 10)[0]
    old = signing() or 'mail'
    assert old != new, 'the new key signs at once, before the publish delay'
    assert (dkim_dir() / ('%s.%s.txt' % (DOMAIN, new))).exists()
    raw_before = signed_message(tls, 'rotation-before-%s' % tag)
    assert (signing() or 'mail') == old, 'signing moved before the publish delay (%d s)' % PUBLISH
    assert selector_of(raw_before) == old
    # make dns prints both: the signing key and the next one.
    before_dir = tmp_path / 'before'
    make_dns(before_dir)
    zone = check_zone(DOMAIN, before_dir / ('%s.zone' % DOMAIN))
    for sel in (old, new):
        assert txt(zone, '%s._domainkey.%s.' % (sel, DOMAIN)), 'make dns does not print the %s key' % sel
    assert verifies_with_zone(raw_before, before_dir / ('%s.zone' % DOMAIN))

    # 2. After the publish delay the next key signs; the old record stays published.
    wait_for('the switch to %s' % new, lambda: signing() == new, PUBLISH + 2 * SCAN + 10)
    time.sleep(2)  # Rspamd's reload after the map changed
    after_dir = tmp_path / 'after'
    make_dns(after_dir)
    raw_after = signed_message(tls, 'rotation-after-%s' % tag)
    assert selector_of(raw_after) == new
    assert verifies_with_zone(raw_after, after_dir / ('%s.zone' % DOMAIN))
    # Mail signed before the switch still verifies with what is published now.
    assert verifies_with_zone(raw_before, after_dir / ('%s.zone' % DOMAIN))

    # 3. The retired key goes after its delay, and make dns stops printing it.
    wait_for('the removal of %s' % old, lambda: old not in selectors(), RETIRE + 2 * SCAN + 10)
    gone_dir = tmp_path / 'gone'
    make_dns(gone_dir)
    zone = check_zone(DOMAIN, gone_dir / ('%s.zone' % DOMAIN))
    assert not txt(zone, '%s._domainkey.%s.' % (old, DOMAIN))
    assert txt(zone, '%s._domainkey.%s.' % (new, DOMAIN))
