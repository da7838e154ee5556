"""Pure functions of _smoke."""

from __future__ import annotations

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
