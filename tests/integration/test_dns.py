"""The DNS records an operator publishes (make dns, playbooks/dns.yml), read
as a DNS operator and a receiving server would: every zone loads in BIND's
named-checkzone, the DKIM record verifies what the stack signs, the MTA-STS
id belongs to the policy the HTTPS entry serves, the TLSA record matches the
key the MX presents, and a second run changes nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import dkim
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailclient import HOST, env_port, fetch_raw, imaps_login, submit, wait_uids

# The collection resolves as ansible_collections.maillab.mailserver.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / '.collections'))
from ansible_collections.maillab.mailserver.plugins.module_utils._dns_zone import mta_sts_id  # noqa: E402

pytestmark = pytest.mark.challenge

ROOT = Path(__file__).resolve().parents[2]
NAMED_CHECKZONE = shutil.which('named-checkzone')
# How long after a domain is made in PostfixAdmin its DKIM key exists
# (rspamd_dkim_scan_interval, 30 s at the SQL levels, and the pass itself).
DKIM_DELAY = 45


def make_dns(out_dir, *extra):
    """Run the DNS playbook against the stack under test (its inventory),
    the zones written to out_dir; returns the play's output."""
    # The lab's values, then the scenario's (names, ports, config dir).
    run = subprocess.run([sys.executable, '-m', 'ansible.cli.playbook', '-i', str(ROOT / 'inventories/lab/hosts.yml'),
                          '-i', os.environ['MAILLAB_INVENTORY'], 'playbooks/dns.yml', '-e', 'dns_output_dir=%s' % out_dir, '-e', 'dns_dnssec=true', *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1'))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    return out


def check_zone(domain, path):
    assert NAMED_CHECKZONE, "named-checkzone is missing: make deps installs Debian's bind9-utils"
    run = subprocess.run([NAMED_CHECKZONE, domain, str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.rstrip().endswith('OK'), (domain, run.stdout, run.stderr)
    return dns.zone.from_file(str(path), origin=domain, relativize=False)


def txt(zone, name):
    """The TXT strings of name, each record joined."""
    node = zone.get_node(name)
    rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT) if node else None
    return [b''.join(r.strings).decode() for r in rdataset] if rdataset else []


def wait_dkim_record(domain):
    """The DKIM record file the stack writes for domain, once it exists."""
    dkim_dir = Path(os.environ['MAILLAB_DKIM_DIR'])
    deadline = time.monotonic() + DKIM_DELAY
    while time.monotonic() < deadline:
        found = sorted(dkim_dir.glob('%s.*.txt' % domain))
        if found:
            return found[0]
        time.sleep(1)
    raise AssertionError('no DKIM key for %s in %s after %d s' % (domain, dkim_dir, DKIM_DELAY))


@pytest.fixture(scope='module')
def zones(tmp_path_factory, database_domain):
    """make dns once, with a domain made in PostfixAdmin among the hosted ones."""
    domain = database_domain
    wait_dkim_record(domain)
    out_dir = tmp_path_factory.mktemp('dns')
    out = make_dns(out_dir)
    return out_dir, out, domain


@pytest.fixture(scope='module')
def database_domain(stack):
    """A module-wide domain that exists only in the database."""
    domain = 'zone%s.example' % os.urandom(3).hex()
    admin = stack.prefix + 'mail-admin'
    stack.docker('exec', '-u', 'www-data', admin, 'postfixadmin-cli', 'domain', 'add', domain,
                 '--aliases', '0', '--mailboxes', '0', '--active', '1')
    yield domain
    stack.docker('exec', '-u', 'www-data', admin, 'postfixadmin-cli', 'domain', 'delete', domain, check=False)


def test_every_hosted_domain_gets_a_zone_that_named_checkzone_loads(stack, zones):
    out_dir, out, made = zones
    for domain in (stack.domain, made):
        path = out_dir / ('%s.zone' % domain)
        assert path.is_file(), 'no zone for %s in %s' % (domain, sorted(p.name for p in out_dir.iterdir()))
        # What the play prints is the file.
        soa = next(line for line in path.read_text().splitlines() if ' IN SOA ' in line)
        assert soa.strip() in out
        zone = check_zone(domain, path)
        mx = zone.get_rdataset(domain + '.', 'MX')
        assert [r.exchange.to_text() for r in mx] == ['mail.%s.' % stack.domain]
        assert txt(zone, domain + '.') == ['v=spf1 mx -all']
        dmarc = txt(zone, '_dmarc.%s.' % domain)
        # Reports go to an address every hosted domain has.
        assert dmarc and dmarc[0].startswith('v=DMARC1; p=') and 'rua=mailto:postmaster@%s' % domain in dmarc[0]
        assert txt(zone, '_smtp._tls.%s.' % domain) == ['v=TLSRPTv1; rua=mailto:postmaster@%s' % domain]
        srv = zone.get_rdataset('_submission._tcp.%s.' % domain, 'SRV')
        assert [(r.port, r.target.to_text()) for r in srv] == [(env_port('SUBMISSION'), 'mail.%s.' % stack.domain)]
        # The DKIM record is the one the stack wrote next to the domain's key.
        record_file = wait_dkim_record(domain)
        selector = record_file.name[len(domain) + 1:-len('.txt')]
        published = txt(zone, '%s._domainkey.%s.' % (selector, domain))
        assert published and published[0].startswith('v=DKIM1;'), published
        assert published[0].replace('" "', '') in record_file.read_text().replace('" "', '')


def test_the_published_dkim_record_verifies_mail_an_authenticated_user_sends(stack, tls, tag, zones):
    out_dir, _out, _made = zones
    zone = check_zone(stack.domain, out_dir / ('%s.zone' % stack.domain))
    subject = 'dns-dkim-%s' % tag
    submit(tls, subject, 'signed with the key of the published record')
    imap = imaps_login(tls, 'user2@example.com', 'password')
    try:
        uids = wait_uids(imap, 'SUBJECT', subject, timeout=60)
        if not uids:
            uids = wait_uids(imap, 'SUBJECT', subject, mailbox='Junk', timeout=5)
        assert uids, 'the message did not arrive'
        raw = fetch_raw(imap, uids[-1:])[0]
    finally:
        imap.logout()
    assert b'DKIM-Signature:' in raw

    def lookup(qname, timeout=5):
        found = txt(zone, qname.decode() if qname.decode().endswith('.') else qname.decode() + '.')
        return found[0].encode() if found else None

    assert dkim.verify(raw, dnsfunc=lookup), 'the signature does not verify against the printed record'


def test_the_mta_sts_record_names_the_policy_the_https_entry_serves(stack, tls, zones):
    out_dir, _out, _made = zones
    zone = check_zone(stack.domain, out_dir / ('%s.zone' % stack.domain))
    record = txt(zone, '_mta-sts.%s.' % stack.domain)
    assert len(record) == 1 and record[0].startswith('v=STSv1; id='), record
    # As a sender fetches it: https://mta-sts.<domain>/.well-known/mta-sts.txt,
    # the certificate checked against that name.
    name = 'mta-sts.' + stack.domain
    with socket.create_connection((HOST, env_port('ADMIN')), timeout=30) as raw_sock:
        with tls.wrap_socket(raw_sock, server_hostname=name) as conn:
            conn.sendall(b'GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n'
                         % name.encode())
            reply = b''
            while chunk := conn.recv(65536):
                reply += chunk
    head, _, body = reply.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 200'), head
    assert b'content-type: text/plain' in head.lower()
    policy = body.decode()
    lines = dict(line.split(': ', 1) for line in policy.splitlines() if line)
    assert lines['version'] == 'STSv1' and lines['mode'] in ('testing', 'enforce')
    assert lines['mx'] == 'mail.' + stack.domain
    assert int(lines['max_age']) > 0
    # The record's id is the one of this policy: a policy change gives a new id.
    assert record[0] == 'v=STSv1; id=%s' % mta_sts_id(policy)
    assert mta_sts_id(policy.replace('mx: ', 'mx: other.')) != mta_sts_id(policy)


def test_the_tlsa_record_matches_the_key_the_mx_presents(stack, zones):
    out_dir, _out, _made = zones
    zone = check_zone(stack.domain, out_dir / ('%s.zone' % stack.domain))
    tlsa = zone.get_rdataset('_25._tcp.mail.%s.' % stack.domain, 'TLSA')
    assert tlsa, 'no TLSA record with dns_dnssec=true'
    # The key the MX presents after STARTTLS, as a DANE sender sees it.
    context = ssl.create_default_context(cafile=os.environ['MAILLAB_CA'])
    smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=30)
    try:
        smtp._host = 'mail.' + stack.domain
        smtp.starttls(context=context)
        der = smtp.sock.getpeercert(binary_form=True)
    finally:
        smtp.quit()
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert [(r.usage, r.selector, r.mtype, r.cert.hex()) for r in tlsa] == [(3, 1, 1, hashlib.sha256(spki).hexdigest())]


def test_a_second_run_changes_no_zone(zones):
    out_dir, _out, made = zones
    before = {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in out_dir.glob('*.zone')}
    out = make_dns(out_dir)
    assert 'changed=0' in out, out[-2000:]
    assert {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in out_dir.glob('*.zone')} == before


def test_outbound_tls_is_opportunistic_without_a_dnssec_resolver(stack):
    """No DNSSEC-validating resolver in the inventory (postfix_dnssec_resolvers):
    Postfix offers TLS to other servers without DANE, and trusts no DNS answer
    as validated."""
    level = stack.docker('exec', stack.smtp, 'postconf', '-h', 'smtp_tls_security_level').stdout.strip()
    support = stack.docker('exec', stack.smtp, 'postconf', '-h', 'smtp_dns_support_level').stdout.strip()
    assert (level, support) == ('may', ''), (level, support)
