"""mail_smoke end to end against in-process SMTP and IMAP servers."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.maillab.mailserver.plugins.modules import mail_smoke

USERS = {'user1@example.com': 'secret'}


def run(args, check_mode=False, capsys=None):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        mail_smoke.main()
    out = json.loads(capsys.readouterr().out)
    return exit_info.value.code, out


def base(smtp_port, imap_port=None, **extra):
    args = dict(smtp_port=smtp_port, mail_from='test@example.com', rcpt_to=['user1@example.com'],
                imap_timeout=2, timeout=5)
    if 'raw_message' not in extra:
        args['subject'] = 'Test Docker'
    if imap_port:
        args.update(imap_port=imap_port, imap_user='user1@example.com', imap_password='secret')
    else:
        args['imap_check'] = False
    args.update(extra)
    return args


def test_send_and_find(smtp_server, imap_server, mailbox, capsys):
    rc, out = run(base(smtp_server(), imap_server(USERS)), capsys=capsys)
    assert rc == 0, out
    assert out['changed'] is False
    assert out['accepted'] and out['found'] and out['deleted']
    assert out['smtp']['code'] == 250 and out['smtp']['queue_id'] == '4TEST01'
    assert out['imap_uid'] == 1 and out['seconds_to_visible'] >= 0
    assert 'SIZE' in ' '.join(out['smtp']['capabilities']) or out['smtp']['capabilities']
    assert mailbox.messages['user1@example.com'] == [], 'the probe was deleted'
    assert 'secret' not in json.dumps(out)


def test_keep_message_when_delete_false(smtp_server, imap_server, mailbox, capsys):
    rc, out = run(base(smtp_server(), imap_server(USERS), delete=False), capsys=capsys)
    assert rc == 0 and out['deleted'] is False
    assert len(mailbox.messages['user1@example.com']) == 1


def test_connection_refused_names_host_and_port(capsys):
    from conftest import free_port
    port = free_port()
    rc, out = run(base(port), capsys=capsys)
    assert rc == 1
    assert out['msg'] == 'SMTP connection refused at 127.0.0.1:%d: is the server running and the port published?' % port


def test_recipient_refused_gives_code_and_text(smtp_server, capsys):
    port = smtp_server(refuse=('user1@example.com',))
    rc, out = run(base(port), capsys=capsys)
    assert rc == 1
    assert out['msg'].startswith('recipient user1@example.com refused at RCPT: 550 5.1.1')


def test_expect_rejected_passes_on_refusal(smtp_server, capsys):
    port = smtp_server(refuse=('user1@example.com',))
    rc, out = run(base(port, expect='rejected', expect_code='5xx'), capsys=capsys)
    assert rc == 0, out
    assert out['accepted'] is False and out['smtp']['stage'] == 'rcpt' and out['smtp']['code'] == 550


def test_expect_rejected_fails_when_accepted(smtp_server, capsys):
    rc, out = run(base(smtp_server(), expect='rejected'), capsys=capsys)
    assert rc == 1
    assert 'accepted' in out['msg'] and 'rejection was expected' in out['msg']


def test_expect_code_mismatch(smtp_server, capsys):
    port = smtp_server(data_code='451 4.3.0 try later')
    rc, out = run(base(port, expect='rejected', expect_code='5xx'), capsys=capsys)
    assert rc == 1
    assert out['msg'] == 'refused at data with 451 4.3.0 try later, but 5xx was expected'


def test_not_found_names_folder_and_count(smtp_server, imap_server, mailbox, capsys):
    port = smtp_server()
    imap = imap_server({'user1@example.com': 'secret', 'user2@example.com': 'other'})
    mailbox.deliver('user2@example.com', b'Subject: old\r\n\r\nold\r\n')
    args = base(port, imap, imap_user='user2@example.com', imap_password='other', imap_timeout=0.5)
    rc, out = run(args, capsys=capsys)
    assert rc == 1
    assert 'not seen in folder INBOX of user2@example.com after 0.5 s (the folder holds 1 messages)' in out['msg']


def test_wrong_imap_password_is_named_without_echo(smtp_server, imap_server, capsys):
    rc, out = run(base(smtp_server(), imap_server(USERS), imap_password='wrong-pw-123'), capsys=capsys)
    assert rc == 1
    assert out['msg'].startswith('IMAP LOGIN rejected for user user1@example.com')
    assert 'wrong-pw-123' not in json.dumps(out)


def test_smtp_auth_rejected_without_echo(smtp_server, capsys):
    port = smtp_server(auth=('user1@example.com', 'secret'))
    rc, out = run(base(port, smtp_user='user1@example.com', smtp_password='bad-pw-456'), capsys=capsys)
    assert rc == 1
    assert out['msg'].startswith('SMTP AUTH rejected for user user1@example.com: 535')
    assert 'bad-pw-456' not in json.dumps(out)


def test_smtp_auth_accepted(smtp_server, capsys):
    port = smtp_server(auth=('user1@example.com', 'secret'))
    rc, out = run(base(port, smtp_user='user1@example.com', smtp_password='secret'), capsys=capsys)
    assert rc == 0, out


def test_starttls_with_ca_file(smtp_server, imap_server, tls_files, capsys):
    args = base(smtp_server('starttls'), imap_server(USERS, 'starttls'), smtp_security='starttls',
                imap_security='starttls', ca_path=tls_files[0], helo='localhost')
    args['smtp_host'] = 'localhost'
    rc, out = run(args, capsys=capsys)
    assert rc == 0, out
    assert out['smtp']['tls'] is True and out['found']
    assert 'LOGINDISABLED' not in out['imap_capabilities']


def test_implicit_tls(smtp_server, imap_server, tls_files, capsys):
    args = base(smtp_server('tls'), imap_server(USERS, 'tls'), smtp_security='tls', imap_security='tls',
                ca_path=tls_files[0])
    rc, out = run(args, capsys=capsys)
    assert rc == 0, out
    assert out['found']


def test_self_signed_refused_unless_told(smtp_server, capsys):
    port = smtp_server('tls')
    rc, out = run(base(port, smtp_security='tls'), capsys=capsys)
    assert rc == 1
    assert out['msg'].startswith('SMTP TLS handshake with 127.0.0.1:%d failed' % port)
    rc, out = run(base(port, smtp_security='tls', validate_certs=False), capsys=capsys)
    assert rc == 0, out


def test_starttls_not_offered(smtp_server, capsys):
    port = smtp_server()
    rc, out = run(base(port, smtp_security='starttls'), capsys=capsys)
    assert rc == 1
    assert out['msg'] == 'SMTP server at 127.0.0.1:%d does not offer STARTTLS' % port


def test_imap_plain_login_refused_before_tls(smtp_server, imap_server, capsys):
    rc, out = run(base(smtp_server(), imap_server(USERS, 'starttls')), capsys=capsys)
    assert rc == 1
    assert 'LOGINDISABLED' in out['msg']


def test_check_mode_sends_nothing(smtp_server, imap_server, mailbox, capsys):
    rc, out = run(base(smtp_server(), imap_server(USERS)), check_mode=True, capsys=capsys)
    assert rc == 0, out
    assert mailbox.messages == {}
    assert 'tag' not in out and out['imap_capabilities']
    assert out['smtp']['banner'].startswith('mx.test')


def test_raw_message_is_sent_with_tag(smtp_server, imap_server, mailbox, capsys):
    raw = 'Subject: raw one\nMessage-ID: <fixed@example.com>\n\nbody\n'
    rc, out = run(base(smtp_server(), imap_server(USERS), raw_message=raw, delete=False), capsys=capsys)
    assert rc == 0, out
    assert out['message_id'] == '<fixed@example.com>'
    assert b'Subject: raw one' in mailbox.messages['user1@example.com'][0]


def test_raw_message_excludes_subject(capsys):
    rc, out = run(dict(mail_from='a@example.com', rcpt_to=['b@example.com'], raw_message='x', subject='y',
                       imap_check=False), capsys=capsys)
    assert rc == 1 and out['msg'] == 'parameters are mutually exclusive: raw_message|subject'


def test_imap_credentials_required(capsys):
    rc, out = run(dict(mail_from='a@example.com', rcpt_to=['b@example.com']), capsys=capsys)
    assert rc == 1 and 'imap_check needs imap_user and imap_password' in out['msg']
