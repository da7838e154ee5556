"""Certificates from an ACME server (mailserver_tls_acme), end to end and
offline: Debian's pebble (an RFC 8555 test server) with its DNS stand-in
(pebble-challtestsrv, every name at 127.0.0.1) validates the names over
HTTP-01 on the HTTPS entry's port 80 listener (the scenario's published
port). Checked as a client would: openssl s_client with pebble's root only,
a second converge that changes nothing, and a forced renewal that reloads
the services while mail flows, without losing a message.

Runs last in the level 3 scenario (marker acme): it converges the stack."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailclient import HOST, compose, env_port

pytestmark = pytest.mark.acme

ROOT = Path(__file__).resolve().parents[2]
PEBBLE = shutil.which('pebble')
CHALLTESTSRV = shutil.which('pebble-challtestsrv')
# Loopback ports of the test's ACME server, its management API and its DNS.
ACME_PORT, MANAGEMENT_PORT, DNS_PORT = 14000, 15000, 18053
MAIL_HOST = 'mail.example.com'


def _self_signed(directory):
    """A certificate for pebble's own HTTPS listener (127.0.0.1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'pebble test listener')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName('localhost'),
                                                        x509.IPAddress(ipaddress.ip_address(HOST))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (directory / 'listener.crt').write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / 'listener.key').write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory / 'listener.crt', directory / 'listener.key'


def _wait_https(url, cafile, timeout=30):
    context = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as reply:
                return reply.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope='module')
def pebble(tmp_path_factory):
    """pebble and pebble-challtestsrv on loopback; yields the directory
    holding pebble's listener certificate and, once fetched, its root."""
    assert PEBBLE and CHALLTESTSRV, "pebble is missing: make deps installs Debian's pebble"
    directory = tmp_path_factory.mktemp('pebble')
    cert, key = _self_signed(directory)
    config = {'pebble': {'listenAddress': '%s:%d' % (HOST, ACME_PORT),
                         'managementListenAddress': '%s:%d' % (HOST, MANAGEMENT_PORT),
                         'certificate': str(cert), 'privateKey': str(key),
                         'httpPort': env_port('ADMIN_HTTP'), 'tlsPort': 5001,
                         'ocspResponderURL': '', 'externalAccountBindingRequired': False}}
    (directory / 'pebble.json').write_text(json.dumps(config))
    logs = []
    dns = subprocess.Popen([CHALLTESTSRV, '-defaultIPv4', HOST, '-defaultIPv6', '', '-dns01', '%s:%d' % (HOST, DNS_PORT),
                            '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', '%s:18055' % HOST],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = subprocess.Popen([PEBBLE, '-config', str(directory / 'pebble.json'), '-dnsserver', '%s:%d' % (HOST, DNS_PORT)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(os.environ, PEBBLE_VA_NOSLEEP='1', PEBBLE_WFE_NONCEREJECT='0'))
    for process in (dns, server):
        threading.Thread(target=lambda p=process: logs.extend(p.stdout), daemon=True).start()
    try:
        _wait_https('https://%s:%d/dir' % (HOST, ACME_PORT), cert)
        yield directory
    finally:
        for process in (server, dns):
            process.terminate()
            process.wait(timeout=30)
        print(''.join(logs[-60:]))


def converge(pebble_dir, *extra, acme=True):
    """The level 3 playbook on the scenario's inventory, with ACME from the test's pebble."""
    values = {'mailserver_tls_acme': acme, 'mailserver_tls_acme_directory': 'https://%s:%d/dir' % (HOST, ACME_PORT),
              'mailserver_tls_acme_ca_file': str(pebble_dir / 'listener.crt'),
              'mailserver_tls_acme_email': 'postmaster@example.com', 'mailserver_tls_acme_terms_agreed': True}
    (pebble_dir / 'acme.json').write_text(json.dumps(values))
    run = subprocess.run([sys.executable, '-m', 'ansible.cli.playbook', '-i', str(ROOT / 'inventories/lab/hosts.yml'),
                          '-i', os.environ['MAILLAB_INVENTORY'], 'playbooks/level3.yml',
                          '-e', '@%s' % (pebble_dir / 'acme.json'), *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
                                  ANSIBLE_FORCE_COLOR='0'))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope='module')
def acme_stack(pebble):
    """The stack converged with ACME on (the last test turns it off again)."""
    out = converge(pebble)
    # pebble's root (made at its start) signs the chain it issued.
    root = _wait_https('https://%s:%d/roots/0' % (HOST, MANAGEMENT_PORT), pebble / 'listener.crt')
    (pebble / 'root.pem').write_bytes(root)
    return pebble, out


def s_client(port, cafile, *extra):
    """openssl s_client as a strict client: pebble's root only, the mail host's name checked."""
    run = subprocess.run(['openssl', 's_client', '-connect', '%s:%d' % (HOST, port), '-servername', MAIL_HOST,
                          '-verify_hostname', MAIL_HOST, '-verify_return_error', '-CAfile', str(cafile), *extra],
                         input='', capture_output=True, text=True, timeout=60)
    return run


def served_serial(port):
    """The serial number of the certificate served on port (not verified: only read)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((HOST, port), timeout=30) as sock:
        with context.wrap_socket(sock, server_hostname=MAIL_HOST) as conn:
            return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True)).serial_number


def test_every_tls_port_serves_the_acme_certificate(acme_stack):
    pebble_dir, _out = acme_stack
    for name in ('SMTPS', 'IMAPS', 'ADMIN'):
        run = s_client(env_port(name), pebble_dir / 'root.pem')
        assert run.returncode == 0 and 'Verify return code: 0 (ok)' in run.stdout, (name, run.stdout[-1500:],
                                                                                     run.stderr[-1500:])
    # STARTTLS on submission too; and the lab CA no longer vouches for it.
    run = s_client(env_port('SUBMISSION'), pebble_dir / 'root.pem', '-starttls', 'smtp')
    assert run.returncode == 0 and 'Verify return code: 0 (ok)' in run.stdout, run.stdout[-1500:]
    assert s_client(env_port('SMTPS'), os.environ['MAILLAB_CA']).returncode != 0


def test_a_second_converge_changes_nothing(acme_stack):
    pebble_dir, _out = acme_stack
    out = converge(pebble_dir)
    recap = out[out.rindex('PLAY RECAP'):]
    assert 'changed=0' in recap, out[-3000:]


def test_a_forced_renewal_reloads_the_servers_without_losing_mail(stack, acme_stack):
    """While messages arrive on port 25 every 0.2 s, a converge renews the
    certificate (remaining_days beyond its lifetime) and reloads Postfix,
    Dovecot and nginx: each port serves the new certificate and every
    message sent meanwhile is delivered."""
    pebble_dir, _out = acme_stack
    before = {name: served_serial(env_port(name)) for name in ('SMTPS', 'IMAPS', 'ADMIN')}
    sent, refused, stop = [], [], threading.Event()
    tag = os.urandom(4).hex()

    def traffic():
        n = 0
        while not stop.is_set():
            subject = 'acme-renewal-%s-%d' % (tag, n)
            try:
                with smtplib.SMTP(HOST, stack.smtp_port, timeout=30) as smtp:
                    smtp.sendmail('sender@example.net', ['user1@example.com'],
                                  compose('sender@example.net', 'user1@example.com', subject, 'during a renewal'))
                sent.append(subject)
            except (OSError, smtplib.SMTPException) as err:
                refused.append((subject, repr(err)))
            n += 1
            time.sleep(0.2)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        out = converge(pebble_dir, '-e', 'mailserver_tls_renew_days=36500')
    finally:
        stop.set()
        worker.join()
    assert 'Reload the certificate in each TLS server' in out
    after = {name: served_serial(env_port(name)) for name in ('SMTPS', 'IMAPS', 'ADMIN')}
    assert all(after[name] != before[name] for name in before), (before, after)
    assert len(set(after.values())) == 1, after
    assert not refused, 'refused during the renewal: %s' % refused[:3]
    assert len(sent) >= 5
    missing = [subject for subject in sent if not stack.find_message('user1@example.com', subject, timeout=30)]
    assert not missing, '%d of %d messages sent during the renewal did not arrive: %s' % (
        len(missing), len(sent), missing[:3])


# Last: the stack leaves this module with the lab certificate it came with.
def test_turning_acme_off_serves_the_lab_certificate_again(acme_stack):
    """A converge with mailserver_tls_acme off signs the certificate with the
    lab CA again and the running servers load it (no restart)."""
    pebble_dir, _out = acme_stack
    out = converge(pebble_dir, acme=False)
    assert 'Reload the certificate in each TLS server' in out
    for name in ('SMTPS', 'IMAPS', 'ADMIN'):
        run = s_client(env_port(name), os.environ['MAILLAB_CA'])
        assert run.returncode == 0 and 'Verify return code: 0 (ok)' in run.stdout, (name, run.stdout[-1500:])
