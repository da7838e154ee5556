"""Unit-test fixtures: real in-process SMTP (aiosmtpd) and IMAP servers, an SMTP
server that answers from a script (for broken sessions), a self-signed
certificate made for the test, and ansible-doc run on this checkout. No
Docker, no network beyond 127.0.0.1."""

from __future__ import annotations

import datetime
import email
import ipaddress
import os
import re
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The collection resolves as ansible_collections.maillab.mailserver.
sys.path.insert(0, str(ROOT / '.collections'))

# What a scripted server does instead of answering: close the connection
# (FIN), reset it (RST), or say nothing until the client gives up.
CLOSE, RESET, HANG = 'close', 'reset', 'hang'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='session')
def tls_files(tmp_path_factory):
    """A self-signed certificate for 'localhost' / 127.0.0.1: (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'localhost')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName('localhost'),
                                                        x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp('tls')
    (d / 'cert.pem').write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / 'key.pem').write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return str(d / 'cert.pem'), str(d / 'key.pem')


@pytest.fixture(scope='session')
def server_tls_context(tls_files):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    return ctx


class Mailbox:
    """Messages shared by the SMTP and IMAP test servers: user -> [bytes]."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = {}

    def deliver(self, user, data):
        with self.lock:
            self.messages.setdefault(user, []).append(data)


# --------------------------------------------------------------------------- SMTP

class _Handler:
    def __init__(self, mailbox, refuse=(), data_code=None):
        self.mailbox = mailbox
        self.refuse = refuse
        self.data_code = data_code

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return '550 5.1.1 <%s>: Recipient address rejected: User unknown' % address
        envelope.rcpt_tos.append(address)
        return '250 2.1.5 Ok'

    async def handle_DATA(self, server, session, envelope):
        if self.data_code:
            return self.data_code
        for rcpt in envelope.rcpt_tos:
            self.mailbox.deliver(rcpt, envelope.content)
        return '250 2.0.0 Ok: queued as 4TEST%02d' % len(envelope.rcpt_tos)


@pytest.fixture
def mailbox():
    return Mailbox()


@pytest.fixture
def smtp_server(mailbox, server_tls_context):
    """Start aiosmtpd servers: smtp_server(mode='plain'|'starttls'|'tls', auth=None, refuse=(), data_code=None)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    started = []

    def start(mode='plain', auth=None, refuse=(), data_code=None):
        handler = _Handler(mailbox, refuse, data_code)
        kwargs = {'hostname': '127.0.0.1', 'port': free_port(), 'server_hostname': 'mx.test'}
        if auth:
            def authenticator(server, session, envelope, mechanism, data):
                ok = data.login.decode() == auth[0] and data.password.decode() == auth[1]
                return AuthResult(success=ok, handled=False)
            kwargs.update(authenticator=authenticator, auth_require_tls=mode == 'starttls')
        if mode == 'starttls':
            kwargs.update(tls_context=server_tls_context, require_starttls=False)
        if mode == 'tls':
            kwargs.update(ssl_context=server_tls_context)
        controller = Controller(handler, **kwargs)
        controller.start()
        started.append(controller)
        return controller.port

    yield start
    for controller in started:
        controller.stop()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _act(handler, item):
    """Play one scripted item on a StreamRequestHandler: send a line, or
    CLOSE/RESET/HANG. False when the session is over."""
    if item == CLOSE:
        return False
    if item == RESET:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        handler.connection.close()
        return False
    if item == HANG:
        try:
            while handler.rfile.readline():
                pass
        except OSError:
            pass
        return False
    handler.wfile.write(item.encode() + b'\r\n')
    handler.wfile.flush()
    return True


class _ScriptedSmtpHandler(socketserver.StreamRequestHandler):
    """An SMTP server that answers each command from a script:
    {verb: [reply line | CLOSE | RESET | HANG, ...]}. Verbs: GREETING, EHLO,
    HELO, STARTTLS, AUTH, MAIL, RCPT, DATA, '.' (end of the message), RSET,
    QUIT; what the script leaves out gets an ordinary answer."""

    DEFAULTS = {
        'GREETING': ['220 scripted.test ESMTP'],
        'EHLO': ['250-scripted.test', '250-SIZE 10240000', '250 8BITMIME'],
        'HELO': ['250 scripted.test'],
        'MAIL': ['250 2.1.0 Ok'],
        'RCPT': ['250 2.1.5 Ok'],
        'DATA': ['354 End data with <CR><LF>.<CR><LF>'],
        '.': ['250 2.0.0 Ok: queued as 4SCRIPT1'],
        'RSET': ['250 2.0.0 Ok'],
        'NOOP': ['250 2.0.0 Ok'],
        'QUIT': ['221 2.0.0 Bye', CLOSE],
    }

    def play(self, verb):
        items = self.server.script.get(verb, self.DEFAULTS.get(verb, ['502 5.5.2 Error: command not recognized']))
        return all(_act(self, item) for item in items)

    def handle(self):
        if not self.play('GREETING'):
            return
        in_data = False
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode('utf-8', 'replace').rstrip('\r\n')
            if in_data:
                if line != '.':
                    continue
                verb, in_data = '.', False
            else:
                verb = re.split(r'[ :]', line, maxsplit=1)[0].upper()
                self.server.commands.append(line)
                in_data = verb == 'DATA' and self.server.script.get('DATA', self.DEFAULTS['DATA'])[0].startswith('354')
            if not self.play(verb):
                return


@pytest.fixture
def scripted_smtp():
    """Start an SMTP server that answers from a script (see _ScriptedSmtpHandler):
    scripted_smtp({'MAIL': ['421 4.7.0 Error: too many connections', CLOSE]})
    -> (port, commands received)."""
    servers = []

    def start(script=None):
        server = _Server(('127.0.0.1', 0), _ScriptedSmtpHandler)
        server.script = dict(script or {})
        server.commands = []
        threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
        servers.append(server)
        return server.server_address[1], server.commands

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- IMAP

class _ImapHandler(socketserver.StreamRequestHandler):
    """Just enough IMAP4rev1 for the smoke module: CAPABILITY, STARTTLS, LOGIN,
    SELECT, UID SEARCH HEADER, UID STORE, UID EXPUNGE, EXPUNGE, CLOSE, LOGOUT.

    The server's faults, {command: [line | CLOSE | RESET | HANG, ...]}, replace
    the answer to a command ('GREETING', 'LOGIN', 'SELECT', 'UID SEARCH',
    'UID STORE', ...); '{tag}' in a line is the command's tag."""

    def fault(self, name, tag=''):
        """Play the fault for name, if any: None (no fault), else whether the session goes on."""
        items = self.server.faults.get(name)
        if items is None:
            return None
        return all(_act(self, item if item in (CLOSE, RESET, HANG) else item.format(tag=tag)) for item in items)

    def send(self, line):
        self.wfile.write(line.encode() + b'\r\n')
        self.wfile.flush()

    def caps(self):
        caps = ['IMAP4rev1', 'UIDPLUS']
        if self.server.starttls and not self.tls:
            caps += ['STARTTLS', 'LOGINDISABLED']
        return ' '.join(caps)

    def handle(self):
        self.tls = self.server.implicit_tls
        self.user = None
        self.deleted = set()
        goes_on = self.fault('GREETING')
        if goes_on is False:
            return
        if goes_on is None:
            self.send('* OK [CAPABILITY %s] test IMAP ready' % self.caps())
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            parts = raw.decode().rstrip('\r\n').split(' ')
            tag, cmd, args = parts[0], parts[1].upper(), parts[2:]
            goes_on = self.fault(cmd + (' ' + args[0].upper() if cmd == 'UID' and args else ''), tag)
            if goes_on is False:
                return
            if goes_on:
                continue
            if cmd == 'CAPABILITY':
                self.send('* CAPABILITY ' + self.caps())
                self.send(tag + ' OK done')
            elif cmd == 'STARTTLS':
                self.send(tag + ' OK begin TLS')
                self.connection = self.server.tls_context.wrap_socket(self.connection, server_side=True)
                self.rfile = self.connection.makefile('rb')
                self.wfile = self.connection.makefile('wb')
                self.tls = True
            elif cmd == 'LOGIN':
                user, password = (a.strip('"') for a in args[:2])
                if self.server.starttls and not self.tls:
                    self.send(tag + ' NO [PRIVACYREQUIRED] Plaintext authentication disallowed')
                elif self.server.users.get(user) == password:
                    self.user = user
                    self.send(tag + ' OK Logged in')
                else:
                    self.send(tag + ' NO [AUTHENTICATIONFAILED] Authentication failed.')
            elif cmd == 'SELECT':
                folder = args[0].strip('"')
                if folder != 'INBOX':
                    self.send(tag + ' NO Mailbox does not exist: ' + folder)
                    continue
                self.send('* %d EXISTS' % len(self.messages()))
                self.send(tag + ' OK [READ-WRITE] Select completed')
            elif cmd == 'UID' and args[0].upper() == 'SEARCH':
                header, value = args[2], args[3].strip('"')
                uids = [str(uid) for uid, msg in self.numbered()
                        if re.search(r'^%s:\s*%s' % (re.escape(header), re.escape(value)),
                                     msg.decode(), re.M | re.I)]
                self.send('* SEARCH ' + ' '.join(uids))
                self.send(tag + ' OK Search completed')
            elif cmd == 'UID' and args[0].upper() == 'STORE':
                self.deleted.add(int(args[1]))
                self.send(tag + ' OK Store completed')
            elif cmd in ('EXPUNGE', 'CLOSE') or (cmd == 'UID' and args[0].upper() == 'EXPUNGE'):
                with self.server.mailbox.lock:
                    msgs = self.server.mailbox.messages.get(self.user, [])
                    keep = [m for i, m in enumerate(msgs, 1) if i not in self.deleted]
                    self.server.mailbox.messages[self.user] = keep
                self.deleted.clear()
                self.send(tag + ' OK done')
            elif cmd == 'LOGOUT':
                self.send('* BYE Logging out')
                self.send(tag + ' OK Logout completed')
                return
            else:
                self.send(tag + ' BAD unknown command')

    def messages(self):
        with self.server.mailbox.lock:
            return list(self.server.mailbox.messages.get(self.user, []))

    def numbered(self):
        return list(enumerate(self.messages(), 1))


@pytest.fixture
def imap_server(mailbox, server_tls_context):
    """Start a test IMAP server: imap_server(users={...}, mode='plain'|'starttls'|'tls', faults={...})."""
    servers = []

    def start(users, mode='plain', faults=None):
        server = _Server(('127.0.0.1', 0), _ImapHandler)
        server.mailbox = mailbox
        server.users = users
        server.faults = dict(faults or {})
        server.starttls = mode == 'starttls'
        server.implicit_tls = mode == 'tls'
        server.tls_context = server_tls_context
        if mode == 'tls':
            server.socket = server_tls_context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def parse(data):
    return email.message_from_bytes(data)


# --------------------------------------------------------------------------- ansible-doc

@pytest.fixture(scope='session')
def ansible_doc():
    """Run the ansible-doc next to this Python on this checkout's collection:
    ansible_doc('-t', 'filter', 'maillab.mailserver.duplicates') -> CompletedProcess."""
    executable = Path(sys.executable).with_name('ansible-doc')
    assert executable.exists(), 'ansible-doc is missing next to %s (pip install -r requirements.txt)' % sys.executable
    env = {k: v for k, v in os.environ.items()
           if k not in ('ANSIBLE_COLLECTIONS_PATH', 'ANSIBLE_COLLECTIONS_PATHS', 'ANSIBLE_FORCE_COLOR')}
    env.update(ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1', ANSIBLE_DEPRECATION_WARNINGS='0')

    def run(*args):
        return subprocess.run([str(executable), *args], cwd=str(ROOT), env=env, capture_output=True, text=True,
                              timeout=120)

    return run
