"""Integration tests: talk to a running stack the way a real client does.

The stack under test is named by environment variables (molecule's verify
step sets them from the scenario's inventory):
  MAILLAB_PREFIX     container/volume/network name prefix ("" for make up)
  MAILLAB_SMTP_PORT  host port of SMTP (127.0.0.1)
  MAILLAB_IMAP_PORT  host port of IMAP (level 2+)
  MAILLAB_DOMAIN     the lab domain
  MAILLAB_SIZE_LIMIT Postfix's message_size_limit
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import uuid

import pytest
import testinfra

# The clients themselves live in mailclient (a plain module that
# scripts/bench.py imports too); tests import them from there. Re-exported
# here for tests that still import them from conftest.
from mailclient import HOST, compose, env_port, greets, submit  # noqa: F401


class Stack:
    def __init__(self):
        self.prefix = os.environ.get('MAILLAB_PREFIX', '')
        self.level = os.environ.get('MAILLAB_LEVEL', '1')
        self.smtp_port = int(os.environ.get('MAILLAB_SMTP_PORT', '2525'))
        self.imap_port = int(os.environ.get('MAILLAB_IMAP_PORT') or 143)
        self.domain = os.environ.get('MAILLAB_DOMAIN', 'example.com')
        self.size_limit = int(os.environ.get('MAILLAB_SIZE_LIMIT', '26214400'))
        self.smtp = self.prefix + 'mail-smtp'
        self.imap = self.prefix + 'mail-imap'
        self.network = self.prefix + 'mailnet'

    def host(self, container):
        return testinfra.get_host('docker://' + container)

    # Where a user's delivered mail lands: INBOX, and with the full stack
    # Junk too (Rspamd may mark mail as spam: delivered all the same).
    FOLDERS = ('new', 'cur', '.Junk/new', '.Junk/cur')

    def _dirs(self, user):
        local, domain = user.split('@')
        return ' '.join('/var/mail/%s/%s/%s' % (domain, local, folder) for folder in self.FOLDERS)

    def maildir_files(self, user, container=None):
        """Paths of the messages delivered to user (INBOX and Junk)."""
        out = self.host(container or self.smtp).run('find %s -type f 2>/dev/null' % self._dirs(user))
        return [line for line in out.stdout.splitlines() if line]

    def find_message(self, user, needle, timeout=15):
        """Paths of the delivered messages of user containing needle, waiting up to timeout s."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.host(self.smtp).run('grep -rlF -- %s %s 2>/dev/null' % (_shq(needle), self._dirs(user)))
            paths = [line for line in out.stdout.splitlines() if line]
            if paths or time.monotonic() > deadline:
                return paths
            time.sleep(0.2)

    def docker(self, *args, check=True, timeout=120):
        return subprocess.run(['docker', *args], capture_output=True, text=True, check=check, timeout=timeout)

    def wait_database(self, timeout=120):
        """Wait until mail-db answers (after a start); returns when it does."""
        db = self.prefix + 'mail-db'
        deadline = time.monotonic() + timeout
        while self.docker('exec', db, 'mariadb-admin', '--silent', 'ping', check=False).returncode != 0:
            assert time.monotonic() < deadline, '%s does not answer %d s after its start' % (db, timeout)
            time.sleep(0.2)

    def wait_answering(self, port, timeout=60):
        """Wait until a server greets on 127.0.0.1:port (what a client needs)."""
        if not greets(port, timeout):
            raise AssertionError('nothing greets on %s:%d after %s s' % (HOST, port, timeout))


@pytest.fixture(scope='module')
def tls():
    """Trusts the stack's lab CA (level 3 on)."""
    return ssl.create_default_context(cafile=os.environ['MAILLAB_CA'])


def _shq(text):
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture(scope='session')
def stack():
    return Stack()


class Dialogue:
    """A raw SMTP/IMAP conversation over a socket, as with telnet."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.file = self.sock.makefile('rb')

    def line(self):
        data = self.file.readline()
        if not data:
            raise ConnectionError('server closed the connection')
        return data.decode('utf-8', 'replace').rstrip('\r\n')

    def reply(self):
        """One SMTP reply (all its lines); returns (code, text)."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if len(line) < 4 or line[3] != '-':
                break
        return int(lines[-1][:3]), '\n'.join(lines)

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode('utf-8'))

    def cmd(self, text):
        self.send(text + '\r\n')
        return self.reply()

    def until_tagged(self, tag):
        """IMAP: lines up to and including the tagged response."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + ' '):
                return lines

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def dialogue():
    opened = []

    def make(port):
        d = Dialogue(port)
        opened.append(d)
        return d
    yield make
    for d in opened:
        d.close()


@pytest.fixture
def tag():
    return uuid.uuid4().hex[:16]


@pytest.fixture
def database_domain(stack, tag):
    """A domain that exists only in the database (as made in PostfixAdmin)."""
    domain = 'auto%s.example' % tag[:6]
    admin = stack.prefix + 'mail-admin'
    stack.docker('exec', '-u', 'www-data', admin, 'postfixadmin-cli', 'domain', 'add', domain,
                 '--aliases', '0', '--mailboxes', '0', '--active', '1')
    yield domain
    stack.docker('exec', '-u', 'www-data', admin, 'postfixadmin-cli', 'domain', 'delete', domain, check=False)
