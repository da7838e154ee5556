# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Protocol logic of the mail_smoke module: send over SMTP, find over IMAP.

Pure standard library (smtplib, imaplib, ssl), so the module runs on any
managed host with Python 3, and unit tests reach it without Ansible. Every
failure is a SmokeError whose message names the step and the cause in one
line: protocol, TLS and socket errors never escape as themselves. The SMTP
functions fill in the caller's dict step by step, so what was learnt before
a failure is still there to report.
"""

from __future__ import annotations

import contextlib
import email.utils
import imaplib
import re
import smtplib
import socket
import ssl
import time
import uuid

TAG_HEADER = 'X-Maillab-Smoke'

# What a broken session raises: protocol errors of either client, TLS errors
# and socket errors (ssl.SSLError, socket.timeout and ConnectionResetError are
# all OSErrors).
SESSION_ERRORS = (OSError, smtplib.SMTPException, imaplib.IMAP4.error)

# The reply of an SMTP server that is closing the session (RFC 5321, 3.8).
SMTP_CLOSING = 421

# SMTP steps as the failure messages name them.
SMTP_STEPS = {'mail': 'MAIL FROM', 'rcpt': 'RCPT TO', 'data': 'DATA'}


class SmokeError(Exception):
    """A failure a person can act on; str() is the one-line explanation."""


def new_tag():
    return uuid.uuid4().hex


def code_matches(code, pattern):
    """True when the SMTP code matches pattern: '550', '5xx', '55x', '4xx,5xx'."""
    if not pattern:
        return True
    code = str(code)
    for alt in str(pattern).replace(' ', '').split(','):
        if len(alt) == 3 and all(p in ('x', 'X', c) for p, c in zip(alt, code)):
            return True
    return False


def parse_queue_id(text):
    """Postfix's queue id from a DATA reply ('... queued as 4XyZ12'), or None."""
    match = re.search(r'queued as ([0-9A-Za-z]+)', text or '')
    return match.group(1) if match else None


def build_message(mail_from, rcpt_to, subject, body, tag, raw_message=None, domain='maillab.invalid'):
    """Return (bytes, message_id). A raw message is sent as it is, with the tag
    header and a Message-ID added at the top when it lacks them."""
    message_id = email.utils.make_msgid(idstring='smoke.' + tag[:12], domain=domain)
    if raw_message is not None:
        text = raw_message.replace('\r\n', '\n')
        head = text.split('\n\n', 1)[0].lower()
        extra = '%s: %s\n' % (TAG_HEADER, tag)
        if '\nmessage-id:' not in '\n' + head:
            extra += 'Message-ID: %s\n' % message_id
        else:
            found = re.search(r'^message-id:\s*(\S+)', text, re.I | re.M)
            message_id = found.group(1) if found else message_id
        text = extra + text
    else:
        lines = [
            'From: <%s>' % mail_from if mail_from else 'From: <>',
            'To: %s' % ', '.join('<%s>' % r for r in rcpt_to),
            'Subject: %s' % subject,
            'Date: %s' % email.utils.formatdate(localtime=False),
            'Message-ID: %s' % message_id,
            '%s: %s' % (TAG_HEADER, tag),
            'MIME-Version: 1.0',
            'Content-Type: text/plain; charset=utf-8',
            'Content-Transfer-Encoding: 8bit',
            '',
            body,
        ]
        text = '\n'.join(lines)
    if not text.endswith('\n'):
        text += '\n'
    return text.replace('\n', '\r\n').encode('utf-8'), message_id


def _tls_context(validate_certs, ca_path):
    if not validate_certs:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_path or None)


def _where(host, port):
    return '%s:%s' % (host, port)


def _seconds(value):
    return '%g' % value if isinstance(value, (int, float)) else str(value)


def _tls_problem(exc):
    """What a TLS error says, with the way out when a certificate is not trusted."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, 'verify_message', None)
        return ('%s%s (name the CA that signed the server certificate with ca_path, or set validate_certs: false '
                'for a self-signed lab certificate)' % (getattr(exc, 'reason', None) or 'certificate verify failed',
                                                        ', ' + detail if detail else ''))
    return str(getattr(exc, 'reason', None) or exc)


def _no_answer(timeout):
    return 'no answer within %s s' % _seconds(timeout) if timeout else 'no answer in time'


def _imap_abort(text):
    """imaplib's abort texts in words: a dropped connection, a BYE, a garbled answer."""
    text = re.sub(r'^command: \S+ => ', '', _plain(text))
    if text.startswith('socket error:'):
        detail = text[len('socket error:'):].strip()
        if detail == 'EOF' or 'Broken pipe' in detail:
            return 'server closed the connection'
        if 'reset' in detail.lower():
            return 'the server reset the connection'
        return 'connection failed (%s)' % detail
    if text.startswith(('unexpected', 'got more than')):
        return 'unexpected answer from the server (%s)' % text
    # What is left is the text of the server's BYE.
    return 'server closed the connection (%s)' % text if text else 'server closed the connection'


def _imap_error(text):
    """imaplib's "X command error: BAD [b'...']" as the server's answer."""
    text = _plain(text)
    match = re.match(r'^\S+ command error: (\S+) \[(.*)\]$', text)
    if not match:
        return text
    answer = re.sub(r"""b(['"])(.*?)\1""", r'\2', match.group(2))
    return 'server answered %s %s' % (match.group(1), answer)


def describe_error(exc, timeout=None):
    """One line for a protocol, TLS or socket error, without the step (the
    caller names it). timeout: the socket timeout in force, for 'no answer'."""
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib turns every failed read or write into this; the socket error
        # it caught tells a timeout or a reset from a closed connection.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return _no_answer(timeout)
        if isinstance(cause, ConnectionResetError):
            return 'the server reset the connection'
        return 'server closed the connection'
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = _reply(exc.smtp_code, exc.smtp_error)
        return 'server answered %d %s' % (reply['code'], reply['text'])
    if isinstance(exc, imaplib.IMAP4.abort):
        return _imap_abort(exc)
    if isinstance(exc, imaplib.IMAP4.error):
        return _imap_error(exc)
    if isinstance(exc, smtplib.SMTPException):
        return _plain(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLError):
        return 'TLS error: %s' % _tls_problem(exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return _no_answer(timeout)
    if isinstance(exc, ConnectionResetError):
        return 'the server reset the connection'
    if isinstance(exc, (BrokenPipeError, ConnectionAbortedError)):
        return 'server closed the connection'
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, socket.gaierror):
        return 'host cannot be resolved: %s' % exc
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def step(name, timeout=None):
    """Run one protocol step: any session error inside becomes a SmokeError
    'name: cause' (a SmokeError raised inside passes unchanged)."""
    try:
        yield
    except SmokeError:
        raise
    except SESSION_ERRORS as exc:
        raise SmokeError('%s: %s' % (name, describe_error(exc, timeout))) from exc


def _network_error(kind, host, port, exc, timeout):
    """The failure to open a session (connect, greeting, TLS handshake)."""
    where = _where(host, port)
    # smtplib reports a greeting that never came as a disconnection.
    cause = (exc.__cause__ or exc.__context__) if isinstance(exc, smtplib.SMTPServerDisconnected) else exc
    if isinstance(exc, ssl.SSLError):
        return SmokeError('%s TLS handshake with %s failed: %s' % (kind, where, _tls_problem(exc)))
    if isinstance(exc, ConnectionRefusedError):
        return SmokeError('%s connection refused at %s: is the server running and the port published?' % (kind, where))
    if isinstance(cause, (socket.timeout, TimeoutError)):
        return SmokeError('%s server at %s did not answer within %s s' % (kind, where, _seconds(timeout)))
    if isinstance(exc, socket.gaierror):
        return SmokeError('%s host %s cannot be resolved: %s' % (kind, host, exc))
    if isinstance(exc, smtplib.SMTPConnectError):
        reply = _reply(exc.smtp_code, exc.smtp_error)
        return SmokeError('%s server at %s refused the session: %d %s' % (kind, where, reply['code'], reply['text']))
    if isinstance(exc, imaplib.IMAP4.error) and not isinstance(exc, imaplib.IMAP4.abort):
        return SmokeError('%s server at %s refused the session: %s' % (kind, where, _plain(exc)))
    return SmokeError('%s connect to %s: %s' % (kind, where, describe_error(exc, timeout)))


def _starttls(proto, host, port, timeout, upgrade):
    """Run upgrade() (the client's STARTTLS) and turn its failures into one
    line: a handshake failure as a network error of host:port, a refused or
    broken command as "<proto> STARTTLS: ..."."""
    try:
        upgrade()
    except ssl.SSLError as exc:
        raise _network_error(proto, host, port, exc, timeout) from exc
    except SESSION_ERRORS as exc:
        raise SmokeError('%s STARTTLS: %s' % (proto, describe_error(exc, timeout))) from exc

def _reply(code, msg):
    text = msg.decode('utf-8', 'replace') if isinstance(msg, bytes) else str(msg)
    return {'code': int(code), 'text': ' '.join(text.split())}


def _close_quietly(conn):
    try:
        conn.close()
    except SESSION_ERRORS:  # the connection is gone anyway
        pass


# --------------------------------------------------------------------------- SMTP

def smtp_connect(host, port, security='none', timeout=10, validate_certs=True, ca_path=None,
                 helo='mail-smoke.maillab.invalid', user=None, password=None, info=None):
    """Connect, greet (EHLO), upgrade to TLS, authenticate. Returns (smtp, info).

    info (a dict, filled in as the session goes): stage (the step under way,
    None once connected), banner, capabilities, tls. On a SmokeError it holds
    what was learnt before the failing step, and the connection is closed.
    """
    info = {} if info is None else info
    info['stage'] = 'connect'
    try:
        if security == 'tls':
            smtp = smtplib.SMTP_SSL(host, port, local_hostname=helo, timeout=timeout,
                                    context=_tls_context(validate_certs, ca_path))
        else:
            smtp = smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout)
    except SESSION_ERRORS as exc:
        raise _network_error('SMTP', host, port, exc, timeout) from exc
    info['tls'] = security == 'tls'
    try:
        _smtp_greet(smtp, host, port, security, timeout, validate_certs, ca_path, helo, info)
        if user:
            info['stage'] = 'auth'
            _smtp_auth(smtp, host, port, user, password, timeout, info)
    except BaseException:
        _close_quietly(smtp)
        raise
    info['stage'] = None
    return smtp, info


def _smtp_greet(smtp, host, port, security, timeout, validate_certs, ca_path, helo, info):
    info['stage'] = 'ehlo'
    with step('SMTP EHLO', timeout):
        code, banner = smtp.ehlo()
        if code == SMTP_CLOSING:
            raise SmokeError('SMTP EHLO: server closed the connection (%s)' % _reply_line(code, banner))
        if code != 250:
            code, banner = smtp.helo()
            if code != 250:
                raise SmokeError('SMTP HELO %s: server answered %s' % (helo, _reply_line(code, banner)))
    info['banner'] = _reply(code, _first_line(banner))['text']
    info['capabilities'] = _capabilities(smtp)
    if security == 'starttls':
        info['stage'] = 'starttls'
        if not smtp.has_extn('starttls'):
            raise SmokeError('SMTP server at %s does not offer STARTTLS' % _where(host, port))
        _starttls('SMTP', host, port, timeout, lambda: smtp.starttls(context=_tls_context(validate_certs, ca_path)))
        info['tls'] = True
        info['stage'] = 'ehlo'
        with step('SMTP EHLO after STARTTLS', timeout):
            code, banner = smtp.ehlo()
            if code != 250:
                raise SmokeError('SMTP EHLO after STARTTLS: server answered %s' % _reply_line(code, banner))
        info['capabilities'] = _capabilities(smtp)


def _smtp_auth(smtp, host, port, user, password, timeout, info):
    if not smtp.has_extn('auth'):
        raise SmokeError('SMTP server at %s does not offer AUTH%s' % (
            _where(host, port), '' if info['tls'] else ' without TLS (use security starttls or tls)'))
    offered = smtp.esmtp_features.get('auth', '').upper().split()
    mechanism = next((m for m in ('PLAIN', 'LOGIN') if m in offered), None)
    if mechanism is None:
        raise SmokeError('SMTP server at %s offers no AUTH mechanism this client speaks (PLAIN, LOGIN): %s'
                         % (_where(host, port), ' '.join(offered)))
    with step('SMTP AUTH as %s' % user, timeout):
        try:
            # One attempt with one mechanism, so a wrong password costs one
            # failure in the server's log, not one per mechanism.
            smtp.user, smtp.password = user, password or ''
            smtp.auth(mechanism, getattr(smtp, 'auth_' + mechanism.lower()), initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as exc:
            reply = _reply(exc.smtp_code, exc.smtp_error)
            raise SmokeError('SMTP AUTH rejected for user %s: %s %s' % (user, reply['code'], reply['text'])) from exc


def _first_line(msg):
    return msg.split(b'\n', 1)[0] if isinstance(msg, bytes) else str(msg).split('\n', 1)[0]


def _reply_line(code, msg):
    reply = _reply(code, msg)
    return ('%d %s' % (reply['code'], reply['text'])).strip()


def _capabilities(smtp):
    return sorted(k.upper() for k in smtp.esmtp_features)


def smtp_send(smtp, mail_from, rcpt_to, message, info=None):
    """Send one message step by step (MAIL, RCPT for each recipient, DATA) and
    return True when the server accepted it for at least one recipient.

    info (a dict, filled in as the transaction goes): stage (where the server
    refused the message, or the step under way when a SmokeError stops it;
    None when accepted, 'rcpt' when accepted with some recipients refused),
    code and text of the deciding reply, rcpt (the refused recipient that
    decided), queue_id, refused ({recipient: {code, text}}).

    A 421 reply (the server closing the session) ends the transaction at once.
    The session is not reset after a refusal: the caller quits.
    """
    info = {} if info is None else info
    info.update(stage='mail', refused={})
    timeout = getattr(smtp, 'timeout', None)
    with step('SMTP MAIL FROM', timeout):
        code, msg = smtp.mail(mail_from or '', ['SIZE=%d' % len(message)] if smtp.has_extn('size') else [])
    if code != 250:
        info.update(_reply(code, msg))
        return False
    info['stage'] = 'rcpt'
    good = []
    for rcpt in rcpt_to:
        with step('SMTP RCPT TO <%s>' % rcpt, timeout):
            code, msg = smtp.rcpt(rcpt)
        reply = _reply(code, msg)
        if code in (250, 251):
            good.append(rcpt)
            continue
        info['refused'][rcpt] = reply
        if code == SMTP_CLOSING:
            info.update(rcpt=rcpt, **reply)
            return False
    if not good:
        rcpt, first = next(iter(info['refused'].items()))
        info.update(rcpt=rcpt, **first)
        return False
    info['stage'] = 'data'
    with step('SMTP DATA', timeout):
        try:
            code, msg = smtp.data(message)
        except smtplib.SMTPDataError as exc:  # DATA itself refused, no message sent
            code, msg = exc.smtp_code, exc.smtp_error
    reply = _reply(code, msg)
    info.update(reply)
    if code != 250:
        return False
    info['queue_id'] = parse_queue_id(reply['text'])
    info['stage'] = 'rcpt' if info['refused'] else None
    return True


def refusal_message(info):
    """Why the send failed when acceptance was expected, from smtp_send's info."""
    stage = info.get('stage') or 'data'
    code, text = info.get('code'), info.get('text', '')
    if code == SMTP_CLOSING:
        name = SMTP_STEPS.get(stage, stage.upper())
        if stage == 'rcpt' and info.get('rcpt'):
            name += ' <%s>' % info['rcpt']
        return 'SMTP %s: server closed the connection (%s %s)' % (name, code, text)
    what = 'recipient %s' % info['rcpt'] if stage == 'rcpt' and info.get('rcpt') else 'the message'
    return '%s refused at %s: %s %s' % (what, stage.upper(), code, text)


def smtp_quit(smtp):
    """End the session politely; a server that already hung up is no failure."""
    try:
        smtp.quit()
    except SESSION_ERRORS:
        _close_quietly(smtp)


# --------------------------------------------------------------------------- IMAP

def _imap_timeout(imap):
    sock = getattr(imap, 'sock', None)
    try:
        return sock.gettimeout() if sock is not None else None
    except OSError:
        return None


def imap_connect(host, port, security='none', timeout=10, validate_certs=True, ca_path=None):
    """Connect and upgrade to TLS (no login). Returns (imap, capabilities)."""
    try:
        if security == 'tls':
            imap = imaplib.IMAP4_SSL(host, port, ssl_context=_tls_context(validate_certs, ca_path), timeout=timeout)
        else:
            imap = imaplib.IMAP4(host, port, timeout=timeout)
    except SESSION_ERRORS as exc:
        raise _network_error('IMAP', host, port, exc, timeout) from exc
    try:
        if security == 'starttls':
            if 'STARTTLS' not in imap.capabilities:
                raise SmokeError('IMAP server at %s does not offer STARTTLS' % _where(host, port))
            _starttls('IMAP', host, port, timeout,
                      lambda: imap.starttls(ssl_context=_tls_context(validate_certs, ca_path)))
    except BaseException:
        _safe_shutdown(imap)
        raise
    return imap, sorted(str(c) for c in imap.capabilities)


def imap_login(imap, user, password):
    """Log in. Returns the capabilities seen after login."""
    with step('IMAP LOGIN as %s' % user, _imap_timeout(imap)):
        try:
            imap.login(user, password or '')
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            detail = str(exc)
            if 'LOGINDISABLED' in imap.capabilities:
                detail = 'LOGINDISABLED: plaintext login refused without TLS (use security starttls or tls)'
            raise SmokeError('IMAP LOGIN rejected for user %s: %s' % (user, _plain(detail))) from exc
    return sorted(str(c) for c in imap.capabilities)


def _plain(text):
    if isinstance(text, BaseException):
        text = text.args[0] if len(text.args) == 1 else str(text)
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    text = str(text)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return ' '.join(text.split())


def imap_logout(imap):
    """Log out; a server that already hung up is no failure."""
    try:
        imap.logout()
    except Exception:  # the connection is gone anyway
        pass


def _safe_shutdown(imap):
    try:
        imap.shutdown()
    except Exception:  # the connection is gone anyway
        pass


def _quote_folder(folder):
    return '"%s"' % folder.replace('\\', '\\\\').replace('"', '\\"')


def _answer(data):
    return _plain(data[-1] if data else '')


def imap_find(imap, folder, tag, timeout, interval=0.2, clock=time.monotonic, sleep=time.sleep):
    """Wait until a message carrying tag is in folder. Returns (uid, count); uid
    is None when it did not show up within timeout seconds."""
    deadline = clock() + timeout
    sock_timeout = _imap_timeout(imap)
    count = 0
    while True:
        with step('IMAP SELECT %s' % folder, sock_timeout):
            typ, data = imap.select(_quote_folder(folder))
        if typ != 'OK':
            raise SmokeError('IMAP folder %s cannot be selected: %s' % (folder, _answer(data)))
        try:
            count = int(data[0] or 0)
        except (TypeError, ValueError, IndexError):
            count = 0
        with step('IMAP UID SEARCH in %s' % folder, sock_timeout):
            typ, data = imap.uid('SEARCH', 'HEADER', TAG_HEADER, tag)
        if typ != 'OK':
            raise SmokeError('IMAP UID SEARCH in %s: server answered %s %s' % (folder, typ, _answer(data)))
        found = data[0].split() if data and data[0] else []
        if found:
            return int(found[0]), count
        if clock() >= deadline:
            return None, count
        with step('IMAP CLOSE %s' % folder, sock_timeout):
            imap.close()
        sleep(interval)


def imap_delete(imap, uid):
    """Flag the message deleted and expunge it (the folder is selected)."""
    sock_timeout = _imap_timeout(imap)
    with step('IMAP UID STORE %s +FLAGS (\\Deleted)' % uid, sock_timeout):
        typ, data = imap.uid('STORE', str(uid), '+FLAGS.SILENT', r'(\Deleted)')
    if typ != 'OK':
        raise SmokeError('IMAP UID STORE %s +FLAGS (\\Deleted): server answered %s %s' % (uid, typ, _answer(data)))
    if 'UIDPLUS' in imap.capabilities:
        name = 'IMAP UID EXPUNGE %s' % uid
        with step(name, sock_timeout):
            typ, data = imap.uid('EXPUNGE', str(uid))
    else:
        name = 'IMAP EXPUNGE'
        with step(name, sock_timeout):
            typ, data = imap.expunge()
    if typ != 'OK':
        raise SmokeError('%s: server answered %s %s' % (name, typ, _answer(data)))
