"""Mail clients for the integration tests and scripts/bench.py: messages,
submission, IMAP logins and polls, waiting for a greeting. A plain module
(standard library only, no pytest), so the bench imports it too:

    sys.path.insert(0, str(ROOT / 'tests' / 'integration'))
    import mailclient
"""

from __future__ import annotations

import base64
import email.utils
import imaplib
import os
import re
import smtplib
import socket
import time
import uuid

HOST = '127.0.0.1'


def env_port(name):
    """A host port of the stack under test (MAILLAB_<NAME>_PORT)."""
    return int(os.environ['MAILLAB_%s_PORT' % name])


def compose(sender, rcpts, subject, body):
    """A message as a mail client writes it (From, To, Date, Message-ID): with
    the full stack, Rspamd scores a bare "Subject + body" as spam."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    return ('From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@maillab.test>\r\n'
            'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n%s\r\n'
            % (sender, ', '.join(rcpts), subject, email.utils.formatdate(), uuid.uuid4().hex, body))


def submit(tls, subject, body, user='user1@example.com', rcpt='user2@example.com', password='password'):
    """Send as an authenticated user over submission (STARTTLS + AUTH, level 3 on)."""
    smtp = smtplib.SMTP('localhost', env_port('SUBMISSION'), timeout=60)
    try:
        smtp.starttls(context=tls)
        smtp.login(user, password)
        return smtp.sendmail(user, [rcpt], compose(user, rcpt, subject, body))
    finally:
        smtp.quit()


def imap_login(port, user, password, timeout=15, starttls=None):
    """Log in over IMAP on HOST:port. With starttls (an SSL context), STARTTLS
    first when the server refuses plaintext logins (LOGINDISABLED, level 3 on)."""
    imap = imaplib.IMAP4(HOST, port, timeout=timeout)
    if starttls is not None and 'LOGINDISABLED' in imap.capabilities and 'STARTTLS' in imap.capabilities:
        imap.starttls(ssl_context=starttls)
    imap.login(user, password)
    return imap


def imaps_login(tls, user, password, timeout=15, port=None):
    """Log in over IMAPS (level 3 on), trusting tls (the lab CA)."""
    imap = imaplib.IMAP4_SSL('localhost', port or env_port('IMAPS'), ssl_context=tls, timeout=timeout)
    imap.login(user, password)
    return imap


def wait_uids(imap, *criteria, mailbox='INBOX', timeout=15, interval=0.2):
    """UIDs of the messages of mailbox that match the UID SEARCH criteria,
    polling until some do or timeout s have passed (then [])."""
    deadline = time.monotonic() + timeout
    while True:
        imap.select(mailbox)
        typ, data = imap.uid('SEARCH', *criteria)
        uids = data[0].split() if typ == 'OK' and data[0] else []
        if uids or time.monotonic() > deadline:
            return uids
        imap.close()
        time.sleep(interval)


def fetch_raw(imap, uids):
    """The raw messages (bytes) of uids in the selected mailbox, unread."""
    found = []
    for uid in uids:
        _typ, msg = imap.uid('FETCH', uid, '(BODY.PEEK[])')
        found.append(msg[0][1])
    return found


def greets(port, timeout=60, interval=0.3, host=HOST):
    """Whether a server greets (SMTP 2xx, IMAP *) on host:port within timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=3) as sock:
                sock.settimeout(5)
                if sock.recv(64)[:1] in (b'2', b'*'):
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


class ManageSieve:
    """A ManageSieve (RFC 5804) session over a socket, STARTTLS on demand."""

    def __init__(self, port, timeout=15, host=HOST):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile('rb')
        self.capabilities = self.response()[1]

    def line(self):
        data = self.file.readline()
        if not data:
            raise ConnectionError('ManageSieve server closed the connection')
        return data.decode('utf-8', 'replace').rstrip('\r\n')

    def response(self):
        """Lines up to the status line; returns (status, lines before it, status line)."""
        lines = []
        while True:
            line = self.line()
            status = line.split(' ', 1)[0].upper()
            if status in ('OK', 'NO', 'BYE'):
                return status, lines, line
            lines.append(line)

    def command(self, text):
        self.sock.sendall(text.encode('utf-8') + b'\r\n')
        return self.response()

    def starttls(self, context):
        status, _lines, line = self.command('STARTTLS')
        assert status == 'OK', line
        self.sock = context.wrap_socket(self.sock, server_hostname='localhost')
        self.file = self.sock.makefile('rb')
        # RFC 5804: the server sends its capabilities again after TLS.
        self.capabilities = self.response()[1]

    def authenticate(self, user, password):
        token = base64.b64encode(('\0%s\0%s' % (user, password)).encode()).decode()
        return self.command('AUTHENTICATE "PLAIN" "%s"' % token)

    def putscript(self, name, script):
        data = script.encode('utf-8')
        self.sock.sendall(b'PUTSCRIPT "%s" {%d+}\r\n' % (name.encode(), len(data)) + data + b'\r\n')
        return self.response()

    def close(self):
        try:
            self.sock.sendall(b'LOGOUT\r\n')
        except OSError:
            pass
        self.sock.close()


def sasl_mechanisms(capabilities):
    for line in capabilities:
        match = re.match(r'"SASL"\s+"([^"]*)"', line, re.I)
        if match:
            return match.group(1).split()
    return []


def dkim_dns(record_paths):
    """dkimpy's DNS lookup answering with the records of .txt files (a zone
    line "name. IN TXT "..." "..."", as the stack writes next to each key):
    one path or several (a domain's keys while one is rotated)."""
    records = {}
    for path in [record_paths] if isinstance(record_paths, str) else record_paths:
        with open(path) as handle:
            line = handle.read()
        name, strings = line.split()[0], re.findall(r'"([^"]*)"', line)
        if not strings or any(len(s) > 255 for s in strings):
            raise AssertionError('not a zone file TXT line: %r' % line)
        records[name.rstrip('.').lower()] = ''.join(strings).encode()
    return lambda qname, timeout=5: records.get(qname.decode().rstrip('.').lower())
