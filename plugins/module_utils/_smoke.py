# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Protocol logic of the mail_smoke module: send over SMTP, find over IMAP.

Pure standard library (smtplib, imaplib, ssl), so the module runs on any
managed host with Python 3, and unit tests reach it without Ansible. Every
failure is a SmokeError whose message names the cause in one line.
"""

from __future__ import annotations

import email.utils
import imaplib
import re
import smtplib
import socket
import ssl
import time
import uuid

TAG_HEADER = 'X-Maillab-Smoke'


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


def _network_error(kind, host, port, exc, timeout):
    where = _where(host, port)
    if isinstance(exc, ssl.SSLError):
        return SmokeError('%s TLS handshake with %s failed: %s' % (kind, where, getattr(exc, 'reason', None) or exc))
    if isinstance(exc, ConnectionRefusedError):
        return SmokeError('%s connection refused at %s: is the server running and the port published?' % (kind, where))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return SmokeError('%s server at %s did not answer within %s s' % (kind, where, timeout))
    if isinstance(exc, socket.gaierror):
        return SmokeError('%s host %s cannot be resolved: %s' % (kind, host, exc))
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return SmokeError('%s server at %s closed the connection: %s' % (kind, where, exc))
    return SmokeError('%s connection to %s failed: %s' % (kind, where, exc))


def _reply(code, msg):
    text = msg.decode('utf-8', 'replace') if isinstance(msg, bytes) else str(msg)
    return {'code': int(code), 'text': ' '.join(text.split())}


# --------------------------------------------------------------------------- SMTP

def smtp_connect(host, port, security='none', timeout=10, validate_certs=True, ca_path=None,
                 helo='mail-smoke.maillab.invalid', user=None, password=None):
    """Connect, greet (EHLO), upgrade to TLS, authenticate. Returns (smtp, info)."""
    info = {}
    try:
        if security == 'tls':
            smtp = smtplib.SMTP_SSL(host, port, local_hostname=helo, timeout=timeout,
                                    context=_tls_context(validate_certs, ca_path))
        else:
            smtp = smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout)
        code, banner = smtp.ehlo()
        if code != 250:
            code, banner = smtp.helo()
        first = banner.split(b'\n', 1)[0] if isinstance(banner, bytes) else str(banner).split('\n', 1)[0]
        info['banner'] = _reply(code, first)['text']
        if security == 'starttls':
            if not smtp.has_extn('starttls'):
                smtp.close()
                raise SmokeError('SMTP server at %s does not offer STARTTLS' % _where(host, port))
            smtp.starttls(context=_tls_context(validate_certs, ca_path))
            smtp.ehlo()
        info['capabilities'] = sorted(k.upper() for k in smtp.esmtp_features)
        info['tls'] = security in ('tls', 'starttls')
    except SmokeError:
        raise
    except (OSError, smtplib.SMTPException) as exc:
        raise _network_error('SMTP', host, port, exc, timeout)
    if user:
        if not smtp.has_extn('auth'):
            smtp.close()
            raise SmokeError('SMTP server at %s does not offer AUTH%s' % (
                _where(host, port), '' if info['tls'] else ' without TLS (use security starttls or tls)'))
        offered = smtp.esmtp_features.get('auth', '').upper().split()
        mechanism = next((m for m in ('PLAIN', 'LOGIN') if m in offered), None)
        if mechanism is None:
            smtp.close()
            raise SmokeError('SMTP server at %s offers no AUTH mechanism this client speaks (PLAIN, LOGIN): %s'
                             % (_where(host, port), ' '.join(offered)))
        try:
            # One attempt with one mechanism, so a wrong password costs one
            # failure in the server's log, not one per mechanism.
            smtp.user, smtp.password = user, password or ''
            code, msg = smtp.auth(mechanism, getattr(smtp, 'auth_' + mechanism.lower()), initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            reply = _reply(exc.smtp_code, exc.smtp_error)
            raise SmokeError('SMTP AUTH rejected for user %s: %s %s' % (user, reply['code'], reply['text']))
        except (OSError, smtplib.SMTPException) as exc:
            smtp.close()
            raise _network_error('SMTP', host, port, exc, timeout)
    return smtp, info


def smtp_send(smtp, mail_from, rcpt_to, message):
    """Send one message step by step. Returns a dict: accepted (bool), stage of a
    refusal (mail, rcpt, data), code and text of the deciding reply, queue_id,
    refused recipients."""
    result = {'accepted': False, 'stage': None, 'refused': {}}
    code, msg = smtp.mail(mail_from or '', ['SIZE=%d' % len(message)] if smtp.has_extn('size') else [])
    if code != 250:
        result.update(stage='mail', **_reply(code, msg))
        smtp.rset()
        return result
    good = []
    last = None
    for rcpt in rcpt_to:
        code, msg = smtp.rcpt(rcpt)
        last = _reply(code, msg)
        if code in (250, 251):
            good.append(rcpt)
        else:
            result['refused'][rcpt] = last
    if not good:
        rcpt, first = next(iter(result['refused'].items()))
        result.update(stage='rcpt', rcpt=rcpt, **first)
        smtp.rset()
        return result
    code, msg = smtp.data(message)
    reply = _reply(code, msg)
    result.update(reply)
    if code != 250:
        result['stage'] = 'data'
        return result
    result['accepted'] = True
    result['queue_id'] = parse_queue_id(reply['text'])
    result['stage'] = 'rcpt' if result['refused'] else None
    return result


# --------------------------------------------------------------------------- IMAP

def imap_connect(host, port, security='none', timeout=10, validate_certs=True, ca_path=None,
                 user=None, password=None):
    """Connect, upgrade to TLS and log in when user is given. Returns (imap, capabilities)."""
    try:
        if security == 'tls':
            imap = imaplib.IMAP4_SSL(host, port, ssl_context=_tls_context(validate_certs, ca_path), timeout=timeout)
        else:
            imap = imaplib.IMAP4(host, port, timeout=timeout)
        if security == 'starttls':
            if 'STARTTLS' not in imap.capabilities:
                imap.shutdown()
                raise SmokeError('IMAP server at %s does not offer STARTTLS' % _where(host, port))
            imap.starttls(ssl_context=_tls_context(validate_certs, ca_path))
    except SmokeError:
        raise
    except (OSError, imaplib.IMAP4.error) as exc:
        raise _network_error('IMAP', host, port, exc, timeout)
    if user:
        try:
            imap.login(user, password or '')
        except imaplib.IMAP4.error as exc:
            _safe_logout(imap)
            detail = str(exc)
            if 'LOGINDISABLED' in imap.capabilities:
                detail = 'LOGINDISABLED: plaintext login refused without TLS (use security starttls or tls)'
            raise SmokeError('IMAP LOGIN rejected for user %s: %s' % (user, _plain(detail)))
        except OSError as exc:
            raise _network_error('IMAP', host, port, exc, timeout)
    return imap, sorted(str(c) for c in imap.capabilities)


def _plain(text):
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    text = str(text)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return ' '.join(text.split())


def _safe_logout(imap):
    try:
        imap.logout()
    except Exception:  # the connection is gone anyway
        pass


def _quote_folder(folder):
    return '"%s"' % folder.replace('\\', '\\\\').replace('"', '\\"')


def imap_find(imap, folder, tag, timeout, interval=0.2, clock=time.monotonic, sleep=time.sleep):
    """Wait until a message carrying tag is in folder. Returns (uid, count); uid
    is None when it did not show up within timeout seconds."""
    deadline = clock() + timeout
    count = 0
    while True:
        typ, data = imap.select(_quote_folder(folder))
        if typ != 'OK':
            raise SmokeError('IMAP folder %s cannot be selected: %s' % (folder, _plain(data[0] if data else '')))
        count = int(data[0] or 0)
        typ, data = imap.uid('SEARCH', 'HEADER', TAG_HEADER, tag)
        if typ == 'OK' and data and data[0]:
            return int(data[0].split()[0]), count
        if clock() >= deadline:
            return None, count
        imap.close()
        sleep(interval)


def imap_delete(imap, uid):
    """Flag the message deleted and expunge it (the folder is selected)."""
    imap.uid('STORE', str(uid), '+FLAGS.SILENT', r'(\Deleted)')
    if 'UIDPLUS' in imap.capabilities:
        imap.uid('EXPUNGE', str(uid))
    else:
        imap.expunge()
