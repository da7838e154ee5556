"""Pure functions of _smoke."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl

import pytest

from ansible_collections.maillab.mailserver.plugins.module_utils import _smoke


@pytest.mark.parametrize('code,pattern,ok', [
    (550, '5xx', True), (550, '550', True), (554, '55x', True), (451, '5xx', False),
    (451, '4xx,5xx', True), (250, None, True), (552, '550, 554', False),
])
def test_code_matches(code, pattern, ok):
    assert _smoke.code_matches(code, pattern) is ok


def test_parse_queue_id():
    assert _smoke.parse_queue_id('2.0.0 Ok: queued as 4XyZ12AB') == '4XyZ12AB'
    assert _smoke.parse_queue_id('2.0.0 Ok') is None


def test_build_message_generated():
    data, message_id = _smoke.build_message('a@example.com', ['b@example.com'], 'Test Docker', 'Ceci est un test.', 'abc')
    text = data.decode()
    assert '\r\n' in text and '\n' not in text.replace('\r\n', '')
    assert 'X-Maillab-Smoke: abc\r\n' in text and 'Subject: Test Docker\r\n' in text
    assert 'Message-ID: %s' % message_id in text
    assert text.endswith('Ceci est un test.\r\n')


def test_build_message_raw_keeps_its_message_id():
    data, message_id = _smoke.build_message('a@x.org', ['b@x.org'], None, None, 'tag1',
                                            raw_message='Message-ID: <m@x.org>\nSubject: s\n\nb')
    assert message_id == '<m@x.org>'
    assert data.decode().startswith('X-Maillab-Smoke: tag1\r\nMessage-ID: <m@x.org>')


def test_imap_find_gives_up_after_timeout():
    class FakeImap:
        capabilities = ()

        def select(self, folder):
            return 'OK', [b'3']

        def uid(self, *args):
            return 'OK', [b'']

        def close(self):
            pass

    now = [0.0]
    uid, count = _smoke.imap_find(FakeImap(), 'INBOX', 't', timeout=1, interval=0.4,
                                  clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert uid is None and count == 3 and now[0] >= 1


def _raised_from(exc, cause):
    """exc as smtplib raises it while handling cause."""
    try:
        try:
            raise cause
        except OSError:
            raise exc
    except Exception as raised:
        return raised


@pytest.mark.parametrize('exc,text', [
    (smtplib.SMTPServerDisconnected('Connection unexpectedly closed'), 'server closed the connection'),
    (_raised_from(smtplib.SMTPServerDisconnected('Connection unexpectedly closed: timed out'),
                  socket.timeout('timed out')), 'no answer within 5 s'),
    (_raised_from(smtplib.SMTPServerDisconnected('Connection unexpectedly closed'), ConnectionResetError(104, 'reset')),
     'the server reset the connection'),
    (smtplib.SMTPResponseException(454, b'4.7.0 TLS not available'), 'server answered 454 4.7.0 TLS not available'),
    (smtplib.SMTPDataError(554, b'5.5.1 Error: no valid\n recipients'),
     'server answered 554 5.5.1 Error: no valid recipients'),
    (imaplib.IMAP4.abort('command: SELECT => socket error: EOF'), 'server closed the connection'),
    (imaplib.IMAP4.abort('socket error: [Errno 32] Broken pipe'), 'server closed the connection'),
    (imaplib.IMAP4.abort('socket error: [Errno 104] Connection reset by peer'), 'the server reset the connection'),
    (imaplib.IMAP4.abort('Server shutting down'), 'server closed the connection (Server shutting down)'),
    (imaplib.IMAP4.abort("unexpected response: b'garbage'"),
     "unexpected answer from the server (unexpected response: b'garbage')"),
    (imaplib.IMAP4.error("UID command error: BAD [b'Error in IMAP command']"),
     'server answered BAD Error in IMAP command'),
    (imaplib.IMAP4.error("Couldn't establish TLS session"), "Couldn't establish TLS session"),
    (socket.timeout('timed out'), 'no answer within 5 s'),
    (ConnectionResetError(104, 'Connection reset by peer'), 'the server reset the connection'),
    (BrokenPipeError(32, 'Broken pipe'), 'server closed the connection'),
    (ConnectionRefusedError(111, 'Connection refused'), 'connection refused'),
    (OSError(113, 'No route to host'), 'No route to host'),
])
def test_describe_error(exc, text):
    assert _smoke.describe_error(exc, timeout=5.0) == text


def test_describe_error_of_an_untrusted_certificate_says_what_to_do():
    exc = ssl.SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed')
    exc.reason, exc.verify_message = 'CERTIFICATE_VERIFY_FAILED', 'self-signed certificate'
    text = _smoke.describe_error(exc)
    assert text.startswith('TLS error: CERTIFICATE_VERIFY_FAILED, self-signed certificate (')
    assert 'ca_path' in text and 'validate_certs: false' in text


@pytest.mark.parametrize('exc', [
    smtplib.SMTPServerDisconnected('gone'), imaplib.IMAP4.abort('socket error: EOF'), imaplib.IMAP4.error('NO'),
    ssl.SSLError(1, 'bad record mac'), socket.timeout('timed out'), ConnectionResetError(104, 'reset'),
])
def test_step_names_the_step_of_any_session_error(exc):
    with pytest.raises(_smoke.SmokeError) as info:
        with _smoke.step('SMTP MAIL FROM', timeout=2):
            raise exc
    assert str(info.value).startswith('SMTP MAIL FROM: ') and '\n' not in str(info.value)
    assert info.value.__cause__ is exc


def test_step_lets_smoke_errors_and_bugs_through():
    with pytest.raises(_smoke.SmokeError, match='^as it was$'):
        with _smoke.step('IMAP LOGIN'):
            raise _smoke.SmokeError('as it was')
    with pytest.raises(KeyError):
        with _smoke.step('IMAP LOGIN'):
            raise KeyError('a bug is not a session error')


@pytest.mark.parametrize('info,text', [
    ({'stage': 'mail', 'code': 421, 'text': '4.7.0 Error: too many connections'},
     'SMTP MAIL FROM: server closed the connection (421 4.7.0 Error: too many connections)'),
    ({'stage': 'rcpt', 'rcpt': 'a@example.com', 'code': 421, 'text': '4.4.2 timeout'},
     'SMTP RCPT TO <a@example.com>: server closed the connection (421 4.4.2 timeout)'),
    ({'stage': 'data', 'code': 421, 'text': '4.3.0 bye'}, 'SMTP DATA: server closed the connection (421 4.3.0 bye)'),
    ({'stage': 'rcpt', 'rcpt': 'a@example.com', 'code': 550, 'text': '5.1.1 unknown'},
     'recipient a@example.com refused at RCPT: 550 5.1.1 unknown'),
    ({'stage': 'mail', 'code': 553, 'text': '5.7.1 sender rejected'},
     'the message refused at MAIL: 553 5.7.1 sender rejected'),
    ({'stage': 'data', 'code': 554, 'text': '5.7.1 spam'}, 'the message refused at DATA: 554 5.7.1 spam'),
])
def test_refusal_message(info, text):
    assert _smoke.refusal_message(info) == text
