"""The full stack on a public address (molecule/public): mail ports on
MAILLAB_BIND (127.0.0.2 stands for the host's public address), admin surfaces
on loopback only, unsafe deployments refused before anything changes, the TLS
policy as testssl.sh sees it, per-client limits seen from clients with their
own addresses (test hosts in network namespaces on the stack's network, which
reach the services without Docker's userland proxy), the outbound limit per
user, and least privilege inside."""

from __future__ import annotations

import http.client
import imaplib
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
import uuid
from pathlib import Path

import pytest
import yaml

from mailclient import ManageSieve, compose, env_port

pytestmark = pytest.mark.public

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = os.environ.get('MAILLAB_BIND', '127.0.0.2')
ADMIN = os.environ.get('MAILLAB_ADMIN_BIND', '127.0.0.1')
INVENTORY = Path(os.environ.get('MAILLAB_INVENTORY', ROOT / 'molecule/public/inventory/hosts.yml'))
CERT_NAME = 'localhost'  # a name of the lab certificate; the address is PUBLIC


@pytest.fixture(scope='module')
def secrets():
    """The scenario's inventory values (its own passwords, none of the lab's)."""
    return yaml.safe_load((INVENTORY.parent / 'group_vars/all/main.yml').read_text())


def password_of(secrets, address):
    return next(u['password'] for u in secrets['mailserver_users'] if u['address'] == address)


def tls_context():
    return ssl.create_default_context(cafile=os.environ['MAILLAB_CA'])


def reachable(host, port, timeout=2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PublicSMTP(smtplib.SMTP):
    """smtplib on the public address, checking the certificate's name."""

    def starttls(self, **kwargs):
        self._host = CERT_NAME
        return super().starttls(**kwargs)


def submission(secrets, user='user1@example.com'):
    smtp = PublicSMTP(PUBLIC, env_port('SUBMISSION'), timeout=60)
    smtp.starttls(context=tls_context())
    smtp.login(user, password_of(secrets, user))
    return smtp


class PublicIMAPS(imaplib.IMAP4):
    """IMAPS on the public address, checking the certificate's name."""

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        return tls_context().wrap_socket(sock, server_hostname=CERT_NAME)


def imaps(secrets, user):
    client = PublicIMAPS(PUBLIC, env_port('IMAPS'), timeout=30)
    client.login(user, password_of(secrets, user))
    return client


def containers(stack):
    out = stack.docker('ps', '-a', '--filter', 'label=org.maillab.stack=' + stack.prefix, '--format', '{{.Names}}')
    names = sorted(out.stdout.split())
    assert len(names) == 7, names
    return names


def inspect(stack, name):
    return json.loads(stack.docker('inspect', name).stdout)[0]


# --- Two kinds of ports ---------------------------------------------------------

def test_mail_ports_face_the_public_address_and_admin_ports_never_do(stack):
    mail = {name: env_port(name) for name in ('SMTP', 'SUBMISSION', 'SMTPS', 'IMAP', 'IMAPS', 'MANAGESIEVE')}
    admin = {name: env_port(name) for name in ('ADMIN', 'ADMIN_HTTP', 'RSPAMD')}
    assert PUBLIC != ADMIN
    for name, port in mail.items():
        assert reachable(PUBLIC, port), '%s (%d) does not answer on %s' % (name, port, PUBLIC)
        assert not reachable(ADMIN, port), '%s (%d) is also published on %s' % (name, port, ADMIN)
    for name, port in admin.items():
        assert not reachable(PUBLIC, port), 'admin surface %s (%d) answers on the public address' % (name, port)
        assert reachable(ADMIN, port), 'admin surface %s (%d) is missing on %s' % (name, port, ADMIN)
    for name in containers(stack):
        bindings = inspect(stack, name)['HostConfig']['PortBindings'] or {}
        for port, binds in bindings.items():
            for bind in binds:
                if name.endswith(('mail-admin', 'mail-rspamd')):
                    assert bind['HostIp'] == ADMIN, (name, port, bind)
                else:
                    assert bind['HostIp'] == PUBLIC, (name, port, bind)


def test_postfixadmin_answers_only_over_https_and_never_serves_setup(stack):
    plain = http.client.HTTPConnection(ADMIN, env_port('ADMIN_HTTP'), timeout=30)
    plain.request('GET', '/login.php')
    reply = plain.getresponse()
    assert reply.status == 301 and reply.getheader('Location').startswith('https://')
    for page, want in (('/login.php', 200), ('/setup.php', 403), ('/upgrade.php', 403)):
        secure = http.client.HTTPSConnection(CERT_NAME, env_port('ADMIN'), timeout=30, context=tls_context())
        secure.request('GET', page)
        got = secure.getresponse()
        assert got.status == want, '%s answered %d' % (page, got.status)
        if page == '/login.php':
            cookie = got.getheader('Set-Cookie') or ''
            assert {'secure', 'httponly'} <= {part.strip().lower() for part in cookie.split(';')}, cookie


# --- Refusing unsafe public deployments ---------------------------------------------

def _state(stack):
    return {name: (info['Id'], info['State']['StartedAt'], info['Config']['Image'])
            for name in containers(stack) for info in [inspect(stack, name)]}


@pytest.mark.parametrize('case, args, named', [
    ('a lab password', ['-e', 'mailserver_db_admin_password=lab-postfixadmin-db'], 'mailserver_db_admin_password'),
    ('a lab user password', ['-e', '{"mailserver_users": [{"address": "user1@example.com", "password": "password"}]}'],
     'mailserver_users[user1@example.com]'),
    ('level 2', ['--playbook', 'playbooks/level2.yml'], 'mailserver_level'),
    ('cleartext logins', ['-e', '{"dovecot_auth_allow_cleartext": true}'], 'dovecot_auth_allow_cleartext'),
    ('a public admin bind', ['-e', 'mailserver_admin_bind_address=0.0.0.0'], 'mailserver_admin_bind_address'),
    ('the Docker subnet in mynetworks', ['-e', '{"postfix_mynetworks": ["127.0.0.0/8", "172.16.0.0/12"]}'],
     'postfix_mynetworks'),
])
def test_an_unsafe_public_deployment_is_refused_before_anything_changes(stack, case, args, named):
    playbook = 'playbooks/challenge.yml'
    if args[0] == '--playbook':
        playbook, args = args[1], args[2:]
    before = _state(stack)
    run = subprocess.run([sys.executable, '-m', 'ansible.cli.playbook', '-i', str(INVENTORY), playbook, *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
                                  ANSIBLE_FORCE_COLOR='0'))
    out = run.stdout + run.stderr
    assert run.returncode != 0, '%s was accepted:\n%s' % (case, out[-3000:])
    assert named in out, 'the refusal of %s does not name %s:\n%s' % (case, named, out[-3000:])
    assert 'changed=0' in out, 'something changed before the refusal of %s:\n%s' % (case, out[-3000:])
    assert _state(stack) == before


# --- TLS policy -------------------------------------------------------------------------

TESTSSL = shutil.which('testssl') or shutil.which('testssl.sh')


@pytest.mark.parametrize('name, starttls', [
    ('SMTPS', None), ('IMAPS', None), ('SUBMISSION', 'smtp'), ('IMAP', 'imap'), ('SMTP', 'smtp'), ('ADMIN', None)])
def test_testssl_finds_only_tls12_and_up_without_cbc_or_vulnerabilities(stack, tmp_path, name, starttls):
    assert TESTSSL, "testssl.sh is missing: make deps installs Debian's package"
    host = ADMIN if name == 'ADMIN' else PUBLIC
    report = tmp_path / 'testssl.json'
    argv = [TESTSSL, '--quiet', '--color', '0', '--warnings', 'off', '--sneaky', '--ip', 'one',
            '--jsonfile', str(report), '-p', '-e', '-U']
    if starttls:
        argv += ['--starttls', starttls]
    argv.append('%s:%d' % (host, env_port(name)))
    run = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    findings = json.loads(report.read_text())
    by_id = {f['id']: f for f in findings}
    assert by_id, run.stdout[-2000:]
    for proto in ('SSLv2', 'SSLv3', 'TLS1', 'TLS1_1'):
        assert 'not offered' in by_id[proto]['finding'], (name, proto, by_id[proto])
    assert 'offered' in by_id['TLS1_2']['finding'] and 'not' not in by_id['TLS1_2']['finding']
    ciphers = [f['finding'] for f in findings if f['id'].startswith('cipher_x')]
    assert ciphers, 'no cipher listed for %s' % name
    # Only ECDHE key exchange with AEAD suites (GCM, ChaCha20-Poly1305): no CBC.
    not_aead = [c for c in ciphers if 'ECDH' not in c or not ('GCM' in c or 'CHACHA20' in c)]
    assert not not_aead, '%s offers suites beyond ECDHE+AEAD: %s' % (name, not_aead)
    vulnerable = [f for f in findings if 'VULNERABLE' in f.get('finding', '').upper()
                  and 'NOT VULNERABLE' not in f.get('finding', '').upper()]
    assert not vulnerable, '%s: %s' % (name, vulnerable)


def sieve_handshake(ciphers, version):
    """STARTTLS on the public ManageSieve port with a client that offers only
    the given TLS version and suites; returns (version, suite) or the
    handshake's error."""
    ctx = tls_context()
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers(ciphers + ':@SECLEVEL=0')
    session = ManageSieve(env_port('MANAGESIEVE'), host=PUBLIC)
    try:
        session.starttls(ctx)
        return session.sock.version(), session.sock.cipher()[0]
    except (ssl.SSLError, ConnectionError) as err:
        return err
    finally:
        session.close()


def test_managesieve_speaks_only_tls12_and_up_with_aead_suites(stack):
    """The checks testssl.sh makes on the other ports (Debian 12's testssl.sh
    has no ManageSieve STARTTLS), made by a client after STARTTLS: TLS 1.0
    and 1.1 and CBC suites are refused by the server, ECDHE with AES-GCM or
    ChaCha20-Poly1305 over TLS 1.2 and TLS 1.3 are spoken."""
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        got = sieve_handshake('ALL', version)
        assert isinstance(got, ssl.SSLError), 'ManageSieve speaks %s: %s' % (version.name, got)
        # Refused by the server (its alert), not by this client's OpenSSL.
        assert 'NO_PROTOCOLS_AVAILABLE' not in str(got) and 'PROTOCOL_VERSION' in str(got).upper(), got
    cbc = sieve_handshake('ECDHE+SHA1:ECDHE+SHA256:ECDHE+SHA384', ssl.TLSVersion.TLSv1_2)
    assert isinstance(cbc, ssl.SSLError) and 'HANDSHAKE_FAILURE' in str(cbc).upper(), 'CBC suite accepted: %s' % (cbc,)
    for suites in ('ECDHE+AESGCM', 'ECDHE+CHACHA20'):
        version, suite = sieve_handshake(suites, ssl.TLSVersion.TLSv1_2)
        assert version == 'TLSv1.2' and ('GCM' in suite or 'CHACHA20' in suite), (suites, version, suite)
    assert sieve_handshake('ALL', ssl.TLSVersion.TLSv1_3)[0] == 'TLSv1.3'


# --- Clients with their own addresses ----------------------------------------------------

class NetnsHost:
    """A test host in a network namespace, its veth on the stack's Docker
    bridge with an address of its own: it reaches the containers directly,
    as clients do when published ports bypass Docker's userland proxy."""

    def __init__(self, stack, index):
        self.ns = '%sclient%d' % (stack.prefix, index)
        network = json.loads(stack.docker('network', 'inspect', stack.network).stdout)[0]
        subnet = network['IPAM']['Config'][0]['Subnet']
        base, bits = subnet.split('/')
        octets = base.split('.')
        self.address = '.'.join(octets[:3] + [str(200 + index)])
        self.prefix_len = bits
        self.bridge = 'br-' + network['Id'][:12]
        self.host_if, self.ns_if = 'mt5h%d' % index, 'mt5n%d' % index

    def __enter__(self):
        self.down()
        for argv in (['ip', 'netns', 'add', self.ns],
                     ['ip', 'link', 'add', self.host_if, 'type', 'veth', 'peer', 'name', self.ns_if],
                     ['ip', 'link', 'set', self.ns_if, 'netns', self.ns],
                     ['ip', 'link', 'set', self.host_if, 'master', self.bridge, 'up'],
                     ['ip', '-n', self.ns, 'addr', 'add', '%s/%s' % (self.address, self.prefix_len), 'dev', self.ns_if],
                     ['ip', '-n', self.ns, 'link', 'set', self.ns_if, 'up'],
                     ['ip', '-n', self.ns, 'link', 'set', 'lo', 'up']):
            subprocess.run(argv, check=True, capture_output=True, text=True)
        return self

    def __exit__(self, *exc):
        self.down()

    def down(self):
        subprocess.run(['ip', 'link', 'del', self.host_if], capture_output=True)
        subprocess.run(['ip', 'netns', 'del', self.ns], capture_output=True)

    def python(self, code, timeout=180):
        """Run Python code inside the namespace; returns its JSON output."""
        run = subprocess.run(['ip', 'netns', 'exec', self.ns, sys.executable, '-c', code],
                             capture_output=True, text=True, timeout=timeout)
        assert run.returncode == 0, run.stderr[-2000:]
        return json.loads(run.stdout.strip().splitlines()[-1])


def container_ip(stack, name):
    info = inspect(stack, stack.prefix + name)
    return info['NetworkSettings']['Networks'][stack.network]['IPAddress']


CLIENT = r'''
import imaplib, json, smtplib, ssl, socket, time, threading
ca, imap_ip, smtp_ip, user, password, mode, count = %r
ctx = ssl.create_default_context(cafile=ca)
class IMAPS(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return ctx.wrap_socket(socket.create_connection((self.host, self.port), timeout), server_hostname='localhost')
def imap_login(pw):
    client = IMAPS(imap_ip, 993, timeout=60)
    start = time.monotonic()
    try:
        client.login(user, pw)
        ok = True
    except imaplib.IMAP4.error:
        ok = False
    took = time.monotonic() - start
    try:
        client.logout()
    except Exception:
        pass
    return ok, took
def smtp_auth(pw):
    smtp = smtplib.SMTP(smtp_ip, 587, timeout=60)
    smtp._host = 'localhost'
    smtp.starttls(context=ctx)
    start = time.monotonic()
    try:
        smtp.login(user, pw)
        code = 235
    except smtplib.SMTPResponseException as err:
        code = err.smtp_code
    except smtplib.SMTPServerDisconnected:
        code = 421
    took = time.monotonic() - start
    try:
        smtp.quit()
    except Exception:
        pass
    return code, took
def mx(subject):
    smtp = smtplib.SMTP(smtp_ip, 25, timeout=60)
    smtp.sendmail('client@example.net', [user], 'From: client@example.net\r\nTo: %%s\r\nSubject: %%s\r\n'
                  'Message-ID: <%%s@example.net>\r\n\r\nfrom a test host\r\n' %% (user, subject, subject.replace(' ', '.')))
    smtp.quit()
    return 250, 0
fn = {'imap': imap_login, 'smtp': smtp_auth, 'mx': mx}[mode.split('-')[0]]
if mode.endswith('-wrong'):
    results = [None] * count
    def one(i):
        results[i] = fn('wrong-%%d-%%s' %% (i, password))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
elif mode == 'mx':
    results = [mx(password)]
else:
    results = [fn(password)]
print(json.dumps(results))
'''


def client_run(host, stack, secrets, mode, count=1, user='user1@example.com', subject=None):
    """Run the CLIENT code on a test host (mode imap, smtp, imap-wrong,
    smtp-wrong, or mx with the subject in the password's place)."""
    args = (os.environ['MAILLAB_CA'], container_ip(stack, 'mail-imap'), container_ip(stack, 'mail-smtp'),
            user, subject if mode == 'mx' else password_of(secrets, user), mode, count)
    return host.python(CLIENT % (args,))


def test_twenty_wrong_passwords_slow_or_refuse_only_their_address(stack, secrets):
    """From test host A, twenty wrong passwords over IMAP and over submission:
    A's later attempts are delayed (Dovecot's penalty) or refused (Postfix's
    AUTH rate limit), a good login from host B goes through at once, and the
    logs name the real client addresses."""
    since = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())
    with NetnsHost(stack, 1) as attacker, NetnsHost(stack, 2) as user:
        wrong_imap = client_run(attacker, stack, secrets, 'imap-wrong', 20)
        assert not any(ok for ok, _ in wrong_imap)
        (ok_a, took_a), = client_run(attacker, stack, secrets, 'imap')
        (ok_b, took_b), = client_run(user, stack, secrets, 'imap')
        assert ok_b and took_b < 2, 'a good login from another address took %.1f s' % took_b
        assert took_a >= 4, 'a login from the guessing address was not delayed (%.1f s)' % took_a

        wrong_smtp = client_run(attacker, stack, secrets, 'smtp-wrong', 20)
        codes = [code for code, _ in wrong_smtp]
        assert 235 not in codes
        refused = [code for code in codes if code != 535]
        assert len(refused) >= 20 - 10, 'AUTH rate limit not applied: %s' % codes
        (code_b, took_b), = client_run(user, stack, secrets, 'smtp')
        assert code_b == 235 and took_b < 2, (code_b, took_b)

        subject = 'from test host %s' % uuid.uuid4().hex[:8]
        client_run(user, stack, secrets, 'mx', user='user2@example.com', subject=subject)
        assert stack.find_message('user2@example.com', subject, timeout=30)

        smtp_log = stack.docker('logs', '--since', since, stack.smtp).stdout
        imap_log = stack.docker('logs', '--since', since, stack.imap).stdout + \
            stack.docker('logs', '--since', since, stack.imap).stderr
        for address in (attacker.address, user.address):
            assert '[%s]' % address in smtp_log, 'Postfix does not log %s' % address
            assert 'rip=%s' % address in imap_log, 'Dovecot does not log %s' % address
        assert 'AUTH command rate limit exceeded' in smtp_log and attacker.address in smtp_log
        rspamd = stack.docker('logs', '--since', since, stack.prefix + 'mail-rspamd')
        assert 'ip: %s' % user.address in rspamd.stdout + rspamd.stderr, 'Rspamd does not log %s' % user.address


def test_the_shared_published_port_address_is_exempt_and_the_play_says_so(stack):
    """Every published-port client of this machine arrives from the gateway
    (Docker's userland proxy): that address is exempted from the per-client
    limits, or they would lock every user out at once."""
    network = json.loads(stack.docker('network', 'inspect', stack.network).stdout)[0]
    gateway = network['IPAM']['Config'][0]['Gateway']
    main_cf = stack.host(stack.smtp).run('postconf -h smtpd_client_event_limit_exceptions').stdout
    assert gateway in main_cf.split(), main_cf


def test_an_authenticated_user_beyond_the_outbound_limit_gets_4xx_and_nothing_is_lost(stack, secrets):
    tag = uuid.uuid4().hex[:8]
    accepted, refused = [], []
    smtp = submission(secrets)
    try:
        for i in range(8):
            subject = 'outbound %s %d' % (tag, i)
            try:
                smtp.sendmail('user1@example.com', ['user2@example.com'],
                              compose('user1@example.com', 'user2@example.com', subject, 'limit test'))
                accepted.append(subject)
            except smtplib.SMTPDataError as err:
                refused.append((subject, err.smtp_code, err.smtp_error))
    finally:
        smtp.quit()
    assert refused, 'the outbound limit never applied (%d accepted)' % len(accepted)
    assert all(400 <= code < 500 for _, code, _ in refused), refused
    assert len(accepted) <= 6, accepted
    for subject in accepted:
        assert stack.find_message('user2@example.com', subject, timeout=30), '%s was accepted but not delivered' % subject


# --- Least privilege ---------------------------------------------------------------------

ALLOWED_CAPS = {'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'NET_BIND_SERVICE', 'SETGID', 'SETUID',
                'SYS_CHROOT'}


# The daemons whose writable places are all volumes or tmpfs mounts.
READ_ONLY = {'mail-db', 'mail-redis', 'mail-rspamd'}


def test_every_container_drops_capabilities_and_has_limits(stack):
    for name in containers(stack):
        host = inspect(stack, name)['HostConfig']
        caps = {cap.replace('CAP_', '') for cap in host['CapAdd'] or []}
        assert [c.replace('CAP_', '') for c in host['CapDrop']] == ['ALL'], (name, host['CapDrop'])
        assert caps <= ALLOWED_CAPS, (name, caps - ALLOWED_CAPS)
        assert 'no-new-privileges:true' in (host['SecurityOpt'] or []), (name, host['SecurityOpt'])
        assert host['Memory'] > 0 and host['PidsLimit'] and host['PidsLimit'] > 0, name
        assert not host['Privileged'], name
        if name[len(stack.prefix):] in READ_ONLY:
            assert host['ReadonlyRootfs'], '%s should run with a read-only root filesystem' % name
        mounts = inspect(stack, name)['Mounts']
        assert not any('docker.sock' in (m.get('Source') or '') for m in mounts), name
        tls = [m['Source'] for m in mounts if m['Destination'] == '/etc/maillab-tls']
        assert all(src.endswith('/tls/server') for src in tls), (name, tls)
        for src in tls:
            assert not Path(src, 'ca.key').exists(), '%s mounts the lab CA key' % name
    # Inside: the bounding set really is that small (no CAP_NET_RAW, no CAP_SYS_ADMIN).
    status = stack.host(stack.smtp).run('grep CapBnd /proc/1/status').stdout.split()[-1]
    assert int(status, 16) & ((1 << 13) | (1 << 21)) == 0, status


# Each service's database user reads what it needs and no password hash:
# (user, its secret, a query it needs, what that returns, queries it must not run).
LEAST_PRIVILEGE = [
    ('mailpostfix', 'mailserver_db_postfix_password',
     "SELECT maildir FROM mailbox WHERE username = 'user1@example.com' AND active = '1'", 'example.com/user1/',
     ['SELECT password FROM mailbox', 'SELECT * FROM mailbox', 'SELECT password FROM admin']),
    ('maildkim', 'mailserver_db_dkim_password',
     "SELECT domain FROM domain WHERE domain = 'example.com' AND active = '1' AND backupmx = '0'", 'example.com',
     ['SELECT password FROM mailbox', 'SELECT username FROM mailbox', 'SELECT * FROM domain']),
    ('roundcube_pw', 'mailserver_db_password_changer_password',
     "SELECT username FROM mailbox WHERE username = 'user1@example.com' AND active = '1'", 'user1@example.com',
     ['SELECT password FROM mailbox', 'SELECT * FROM mailbox', 'SELECT password FROM admin',
      "UPDATE mailbox SET maildir = 'x' WHERE username = 'nobody@example.com'"]),
]


@pytest.mark.parametrize('user, secret, good, want, bad', LEAST_PRIVILEGE, ids=[row[0] for row in LEAST_PRIVILEGE])
def test_service_database_users_cannot_read_password_hashes(stack, secrets, user, secret, good, want, bad):
    db = stack.prefix + 'mail-db'
    creds = '[client]\nuser=%s\npassword=%s\nhost=127.0.0.1\n' % (user, secrets[secret])

    def query(sql):
        return subprocess.run(['docker', 'exec', '-i', db, 'bash', '-c',
                               'mariadb --defaults-extra-file=<(cat) -N -B postfixadmin -e "$0"', sql],
                              input=creds, capture_output=True, text=True, timeout=60)

    allowed = query(good)
    assert allowed.returncode == 0 and allowed.stdout.strip() == want, (user, allowed.stdout, allowed.stderr)
    for sql in bad:
        refused = query(sql)
        assert refused.returncode != 0 and 'denied' in refused.stderr, (user, sql, refused.stdout, refused.stderr)


# --- Behind a load balancer: the PROXY protocol -------------------------------------------

HAPROXY_IMAGE = 'maillab-test/haproxy:trixie'
HAPROXY_CFG = '''
global
    log stdout format raw local0
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend smtp
    bind :25
    default_backend smtp
backend smtp
    server smtp smtp:10025 send-proxy-v2
frontend submission
    bind :587
    default_backend submission
backend submission
    server smtp smtp:10587 send-proxy-v2
frontend imaps
    bind :993
    default_backend imaps
backend imaps
    server imap imap:10993 send-proxy-v2
'''


@pytest.fixture(scope='module')
def haproxy(stack):
    """Debian's HAProxy in a container on the stack's network, in front of
    Postfix's and Dovecot's PROXY listeners (the scenario trusts Docker's
    address ranges as the load balancers' networks)."""
    if stack.docker('image', 'inspect', HAPROXY_IMAGE, check=False).returncode != 0:
        dockerfile = ('FROM debian:stable-slim\nRUN apt-get update && apt-get install -y --no-install-recommends '
                      'haproxy && rm -rf /var/lib/apt/lists/*\nCMD ["haproxy", "-W", "-db", "-f", '
                      '"/usr/local/etc/haproxy.cfg"]\n')
        build = subprocess.run(['docker', 'build', '-t', HAPROXY_IMAGE, '-'], input=dockerfile,
                               capture_output=True, text=True, timeout=600)
        assert build.returncode == 0, build.stderr[-2000:]
    name = stack.prefix + 'test-haproxy'
    cfg = Path(os.environ.get('MAILLAB_CONFIG_DIR', '/tmp')) / 'test-haproxy.cfg'
    cfg.write_text(HAPROXY_CFG)
    stack.docker('rm', '-f', name, check=False)
    stack.docker('run', '-d', '--name', name, '--network', stack.network, '--cap-drop', 'ALL',
                 '--cap-add', 'NET_BIND_SERVICE', '--cap-add', 'SETUID', '--cap-add', 'SETGID',
                 '--security-opt', 'no-new-privileges:true',
                 '-v', '%s:/usr/local/etc/haproxy.cfg:ro' % cfg, HAPROXY_IMAGE)
    try:
        deadline = time.monotonic() + 30
        address = ''
        while not address and time.monotonic() < deadline:
            address = inspect(stack, name)['NetworkSettings']['Networks'][stack.network]['IPAddress']
            time.sleep(0.2)
        yield address
    finally:
        logs = stack.docker('logs', name, check=False)
        stack.docker('rm', '-f', name, check=False)
        cfg.unlink()
        print(logs.stdout[-1000:], logs.stderr[-1000:])


PROXIED = r'''
import imaplib, json, smtplib, ssl, socket, threading, time
ca, lb, user, password, subject, wrong = %r
ctx = ssl.create_default_context(cafile=ca)
class IMAPS(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return ctx.wrap_socket(socket.create_connection((self.host, self.port), timeout), server_hostname='localhost')
def login(pw):
    client = IMAPS(lb, 993, timeout=60)
    start = time.monotonic()
    try:
        client.login(user, pw)
        ok = True
    except imaplib.IMAP4.error:
        ok = False
    took = time.monotonic() - start
    client.shutdown()
    return ok, took
out = {}
if wrong:
    threads = [threading.Thread(target=login, args=('wrong-%%d' %% i,)) for i in range(wrong)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
out['login'] = login(password)
if subject:
    mx = smtplib.SMTP(lb, 25, timeout=60)
    mx.sendmail('client@example.net', [user], 'From: client@example.net\r\nTo: %%s\r\nSubject: %%s\r\n'
                'Message-ID: <%%s@example.net>\r\n\r\nthrough the load balancer\r\n' %% (user, subject, subject.replace(' ', '.')))
    mx.quit()
    sub = smtplib.SMTP(lb, 587, timeout=60)
    sub._host = 'localhost'
    sub.starttls(context=ctx)
    sub.login(user, password)
    sub.quit()
print(json.dumps(out))
'''


def test_behind_haproxy_the_stack_sees_and_limits_each_client_by_its_own_address(stack, secrets, haproxy):
    """Clients reach the stack through HAProxy (PROXY protocol v2): Postfix,
    Dovecot and Rspamd log each client's own address, never the balancer's,
    and the login penalty hits only the guessing client."""
    since = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())
    user = 'user2@example.com'
    subject = 'through haproxy %s' % uuid.uuid4().hex[:8]
    with NetnsHost(stack, 3) as attacker, NetnsHost(stack, 4) as client:
        guessed = attacker.python(PROXIED % ((os.environ['MAILLAB_CA'], haproxy, user, 'x', '', 12),))
        served = client.python(PROXIED % ((os.environ['MAILLAB_CA'], haproxy, user,
                                           password_of(secrets, user), subject, 0),))
        assert served['login'][0] and served['login'][1] < 2, served
        assert not guessed['login'][0]
        assert guessed['login'][1] >= 4, 'the guessing client was not slowed down: %s' % guessed
        assert stack.find_message(user, subject, timeout=30)
    smtp_log = stack.docker('logs', '--since', since, stack.smtp).stdout
    imap = stack.docker('logs', '--since', since, stack.imap)
    rspamd = stack.docker('logs', '--since', since, stack.prefix + 'mail-rspamd')
    assert 'postfix/smtp-proxied/smtpd' in smtp_log and 'postfix/submission-proxied/smtpd' in smtp_log
    assert 'connect from unknown[%s]' % client.address in smtp_log
    assert '[%s]' % haproxy not in smtp_log, 'Postfix logs the balancer as the client'
    assert 'rip=%s' % client.address in imap.stdout + imap.stderr
    assert 'rip=%s' % attacker.address in imap.stdout + imap.stderr
    assert 'rip=%s' % haproxy not in imap.stdout + imap.stderr
    assert 'ip: %s' % client.address in rspamd.stdout + rspamd.stderr


WEB_LOGIN = r'''
import http.client, json, re, socket, ssl, urllib.parse
ca, admin_ip, user, password, attempts = %r
ctx = ssl.create_default_context(cafile=ca)
class Conn(http.client.HTTPSConnection):
    # The certificate names localhost: connect by address, check that name.
    def connect(self):
        self.sock = ctx.wrap_socket(socket.create_connection((self.host, self.port), 30), server_hostname='localhost')
def call(method, path, body=None, headers=None):
    conn = Conn(admin_ip, 443, timeout=30)
    conn.request(method, path, body, dict(headers or {}, Host='localhost'))
    reply = conn.getresponse()
    data = reply.read().decode('utf-8', 'replace')
    conn.close()
    return reply, data
statuses = []
for i in range(attempts):
    # As a browser does: the login form (its session cookie and token), then the POST.
    page, html = call('GET', '/login.php')
    cookie = (page.getheader('Set-Cookie') or '').split(';')[0]
    token = re.search(r'name="token" value="([^"]*)"', html)
    fields = {'fUsername': user, 'fPassword': password if attempts == 1 else 'wrong-%%d' %% i,
              'lang': 'en', 'submit': 'Login'}
    if token:
        fields['token'] = token.group(1)
    reply, _ = call('POST', '/login.php', urllib.parse.urlencode(fields),
                    {'Content-Type': 'application/x-www-form-urlencoded', 'Cookie': cookie})
    statuses.append([reply.status, reply.getheader('Location') or ''])
print(json.dumps(statuses))
'''


def test_the_web_login_is_throttled_per_client_address(stack, secrets):
    """Twenty login attempts in a row from one test host: PostfixAdmin's
    login page answers 429 after the burst, while the superadmin logs in from
    another host at once."""
    admin_ip = container_ip(stack, 'mail-admin')
    admin = secrets['postfixadmin_superadmin']
    with NetnsHost(stack, 5) as attacker, NetnsHost(stack, 6) as person:
        guesses = attacker.python(WEB_LOGIN % ((os.environ['MAILLAB_CA'], admin_ip, admin['username'], 'x', 20),))
        codes = [status for status, _ in guesses]
        assert codes[0] == 200, codes
        assert codes.count(429) >= 10, 'the web login is not throttled: %s' % codes
        (status, location), = person.python(WEB_LOGIN % ((os.environ['MAILLAB_CA'], admin_ip, admin['username'],
                                                          admin['password'], 1),))
        assert status in (302, 303) and 'main.php' in location, (status, location)


def test_each_service_is_only_on_the_networks_it_needs(stack):
    """The database and Redis sit on internal networks (no egress) with only
    their clients (Rspamd reads the hosted domains for their DKIM keys);
    Postfix cannot even resolve Redis, nor the database Redis."""
    mail, db, redis = stack.network, stack.prefix + 'mail-dbnet', stack.prefix + 'mail-redisnet'
    attached = {name[len(stack.prefix):]: set(inspect(stack, name)['NetworkSettings']['Networks'])
                for name in containers(stack)}
    assert attached == {'mail-smtp': {mail, db}, 'mail-imap': {mail, db}, 'mail-admin': {mail, db},
                        'mail-webmail': {mail, db}, 'mail-db': {db}, 'mail-rspamd': {mail, db, redis},
                        'mail-redis': {redis}}, attached
    for name in (db, redis):
        assert json.loads(stack.docker('network', 'inspect', name).stdout)[0]['Internal'] is True, name
    assert json.loads(stack.docker('network', 'inspect', mail).stdout)[0]['Internal'] is False
    for container, peer, reachable_ in (('mail-db', 'redis', False), ('mail-smtp', 'redis', False),
                                        ('mail-smtp', 'db', True), ('mail-rspamd', 'redis', True)):
        run = stack.docker('exec', stack.prefix + container, 'getent', 'hosts', peer, check=False)
        assert (run.returncode == 0) == reachable_, (container, peer, run.stdout, run.stderr)


def test_redis_wants_a_password_and_holds_only_its_hash(stack):
    redis = stack.prefix + 'mail-redis'
    ping = stack.docker('exec', redis, 'redis-cli', 'ping', check=False)
    assert 'NOAUTH' in ping.stdout + ping.stderr, ping.stdout + ping.stderr
    acl = stack.docker('exec', redis, 'cat', '/etc/redis/maillab-users/users.acl').stdout
    stored = Path(os.environ['MAILLAB_CONFIG_DIR'], 'rspamd/redis-password')
    assert oct(stored.stat().st_mode & 0o777) == '0o600'
    password = stored.read_text().strip()
    assert len(password) >= 32 and password not in acl and '#' in acl
    # Rspamd authenticates: its learning and statistics work (the controller's stat answers with Redis data).
    assert stack.docker('exec', redis, 'redis-cli', '--no-auth-warning', '--user', 'default', '--pass', 'wrong',
                        'ping', check=False).stdout.strip() != 'PONG'


# Last: it deletes and re-creates a mailbox through a converge.
def test_no_password_appears_in_the_host_process_list_during_a_converge(stack, secrets):
    """A converge that re-creates a mailbox and checks every account (the
    steps that handle passwords), while the host's process list is read every
    50 ms: no password of the inventory ever shows in any argv."""
    values = {secrets[k] for k in secrets if isinstance(secrets[k], str) and k.endswith('password')}
    values |= {u['password'] for u in secrets['mailserver_users']}
    values.add(secrets['postfixadmin_superadmin']['password'])
    stack.docker('exec', '-u', 'www-data', stack.prefix + 'mail-admin', 'postfixadmin-cli',
                 'mailbox', 'delete', 'user2@example.com')
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            out = subprocess.run(['ps', '-eo', 'args'], capture_output=True, text=True).stdout
            seen.extend(line for line in out.splitlines() if any(v in line for v in values))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = subprocess.run([sys.executable, '-m', 'ansible.cli.playbook', '-i', str(INVENTORY),
                              'playbooks/challenge.yml'], cwd=ROOT, capture_output=True, text=True, timeout=900,
                             env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg')))
    finally:
        stop.set()
        watcher.join()
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert not [v for v in values if v in run.stdout + run.stderr], 'a password is in the play output'
    assert not seen, 'passwords in the process list: %s' % sorted({line[:80] for line in seen})[:5]
    # The mailbox is back and its password works.
    client = imaps(secrets, 'user2@example.com')
    client.logout()
