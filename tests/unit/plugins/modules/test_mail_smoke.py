"""mail_smoke end to end against in-process SMTP and IMAP servers."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from conftest import CLOSE, HANG, RESET

from ansible_collections.maillab.mailserver.plugins.doc_fragments.attributes import ModuleDocFragment
from ansible_collections.maillab.mailserver.plugins.module_utils import _smoke
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


# --------------------------------------------------------------------------- broken sessions
# Whatever breaks, and wherever: a one-line message naming the step, and the
# result gathered up to that step.

def assert_one_line_failure(rc, out, msg):
    assert rc == 1, out
    assert out['msg'] == msg
    assert '\n' not in out['msg'] and 'Traceback' not in json.dumps(out)


def test_421_at_mail_then_close_names_the_step_and_keeps_the_smtp_result(scripted_smtp, capsys):
    port, commands = scripted_smtp({'MAIL': ['421 4.7.0 scripted.test Error: too many connections', CLOSE]})
    rc, out = run(base(port), capsys=capsys)
    assert_one_line_failure(rc, out, 'SMTP MAIL FROM: server closed the connection '
                                     '(421 4.7.0 scripted.test Error: too many connections)')
    assert out['accepted'] is False and out['tag'] and out['message_id']
    smtp = out['smtp']
    assert smtp['stage'] == 'mail' and smtp['code'] == 421 and smtp['refused'] == {}
    assert smtp['banner'] == 'scripted.test' and smtp['capabilities'] == ['8BITMIME', 'SIZE'] and smtp['tls'] is False
    # Nothing is sent after the server said it closes the session.
    assert [c.split()[0].upper() for c in commands] == ['EHLO', 'MAIL']


AUTH_EHLO = ['250-scripted.test', '250 AUTH PLAIN LOGIN']


@pytest.mark.parametrize('script,extra,msg,stage', [
    ({'GREETING': ['554 5.7.1 Service unavailable; client host blocked', CLOSE]}, {},
     'SMTP server at 127.0.0.1:{port} refused the session: 554 5.7.1 Service unavailable; client host blocked',
     'connect'),
    ({'GREETING': [CLOSE]}, {}, 'SMTP connect to 127.0.0.1:{port}: server closed the connection', 'connect'),
    ({'GREETING': [HANG]}, {}, 'SMTP server at 127.0.0.1:{port} did not answer within 0.5 s', 'connect'),
    ({'EHLO': ['421 4.3.2 Service shutting down', CLOSE]}, {},
     'SMTP EHLO: server closed the connection (421 4.3.2 Service shutting down)', 'ehlo'),
    ({'EHLO': ['250-scripted.test', '250 STARTTLS'], 'STARTTLS': ['454 4.7.0 TLS not available due to local problem']},
     {'smtp_security': 'starttls'},
     'SMTP STARTTLS: server answered 454 4.7.0 TLS not available due to local problem', 'starttls'),
    ({'EHLO': AUTH_EHLO, 'AUTH': [CLOSE]}, {'smtp_user': 'user1@example.com', 'smtp_password': 'secret'},
     'SMTP AUTH as user1@example.com: server closed the connection', 'auth'),
    ({'MAIL': [CLOSE]}, {}, 'SMTP MAIL FROM: server closed the connection', 'mail'),
    ({'RCPT': [RESET]}, {}, 'SMTP RCPT TO <user1@example.com>: the server reset the connection', 'rcpt'),
    ({'RCPT': [HANG]}, {}, 'SMTP RCPT TO <user1@example.com>: no answer within 0.5 s', 'rcpt'),
    ({'RCPT': ['421 4.4.2 scripted.test Error: timeout exceeded', CLOSE]}, {},
     'SMTP RCPT TO <user1@example.com>: server closed the connection (421 4.4.2 scripted.test Error: timeout exceeded)',
     'rcpt'),
    ({'DATA': ['554 5.5.1 Error: no valid recipients']}, {},
     'the message refused at DATA: 554 5.5.1 Error: no valid recipients', 'data'),
    ({'.': [CLOSE]}, {}, 'SMTP DATA: server closed the connection', 'data'),
    ({'.': [HANG]}, {}, 'SMTP DATA: no answer within 0.5 s', 'data'),
], ids=['greeting-554', 'greeting-close', 'greeting-silent', 'ehlo-421', 'starttls-454', 'auth-close', 'mail-close',
        'rcpt-reset', 'rcpt-silent', 'rcpt-421', 'data-554', 'dot-close', 'dot-silent'])
def test_smtp_session_breaks_at_any_step(scripted_smtp, capsys, script, extra, msg, stage):
    port, _commands = scripted_smtp(script)
    rc, out = run(base(port, timeout=0.5, **extra), capsys=capsys)
    assert_one_line_failure(rc, out, msg.format(port=port))
    assert out['smtp']['stage'] == stage
    if stage not in ('connect', 'ehlo'):
        assert out['smtp']['banner'] == 'scripted.test', 'what EHLO said is kept'
    if stage in ('rcpt', 'data'):
        assert out['accepted'] is False and out['tag']


def test_421_counts_as_the_expected_refusal_only_when_its_code_matches(scripted_smtp, capsys):
    port, _commands = scripted_smtp({'RCPT': ['421 4.7.0 scripted.test Error: too many connections', CLOSE]})
    rc, out = run(base(port, expect='rejected', expect_code='4xx'), capsys=capsys)
    assert rc == 0, out
    assert out['smtp']['stage'] == 'rcpt' and out['smtp']['code'] == 421 and out['accepted'] is False
    rc, out = run(base(port, expect='rejected', expect_code='5xx'), capsys=capsys)
    assert_one_line_failure(rc, out, 'refused at rcpt with 421 4.7.0 scripted.test Error: too many connections, '
                                     'but 5xx was expected')


@pytest.mark.parametrize('faults,msg', [
    ({'GREETING': ['* BYE Too many connections', CLOSE]},
     'IMAP server at 127.0.0.1:{port} refused the session: * BYE Too many connections'),
    ({'GREETING': [CLOSE]}, 'IMAP connect to 127.0.0.1:{port}: server closed the connection'),
    ({'LOGIN': [CLOSE]}, 'IMAP LOGIN as user1@example.com: server closed the connection'),
    ({'LOGIN': [RESET]}, 'IMAP LOGIN as user1@example.com: the server reset the connection'),
    ({'SELECT': ['* BYE Server shutting down', CLOSE]},
     'IMAP SELECT INBOX: server closed the connection (Server shutting down)'),
    ({'UID SEARCH': [HANG]}, 'IMAP UID SEARCH in INBOX: no answer within 0.5 s'),
    ({'UID SEARCH': ['{tag} NO [SERVERBUG] Search failed']},
     'IMAP UID SEARCH in INBOX: server answered NO [SERVERBUG] Search failed'),
    ({'UID SEARCH': ['{tag} BAD Error in IMAP command']},
     'IMAP UID SEARCH in INBOX: server answered BAD Error in IMAP command'),
    ({'UID STORE': ['{tag} NO [CANNOT] Mailbox is read-only']},
     'IMAP UID STORE 1 +FLAGS (\\Deleted): server answered NO [CANNOT] Mailbox is read-only'),
    ({'UID EXPUNGE': [CLOSE]}, 'IMAP UID EXPUNGE 1: server closed the connection'),
], ids=['greeting-bye', 'greeting-close', 'login-close', 'login-reset', 'select-bye', 'search-silent', 'search-no',
        'search-bad', 'store-no', 'expunge-close'])
def test_imap_session_breaks_at_any_step(smtp_server, imap_server, capsys, faults, msg):
    imap_port = imap_server(USERS, faults=faults)
    rc, out = run(base(smtp_server(), imap_port, timeout=0.5), capsys=capsys)
    assert_one_line_failure(rc, out, msg.format(port=imap_port))
    # The SMTP side succeeded and is reported as such.
    assert out['accepted'] is True and out['smtp']['queue_id'] == '4TEST01' and out['smtp']['stage'] is None
    if 'GREETING' not in faults:
        assert out['imap_capabilities'], 'the capabilities seen before the failing step are kept'
    if 'UID STORE' in faults or 'UID EXPUNGE' in faults:
        assert out['found'] is True and out['imap_uid'] == 1 and out['deleted'] is False


def test_check_mode_failure_keeps_what_was_learnt(smtp_server, imap_server, mailbox, capsys):
    rc, out = run(base(smtp_server(), imap_server(USERS, faults={'LOGIN': [CLOSE]})), check_mode=True, capsys=capsys)
    assert_one_line_failure(rc, out, 'IMAP LOGIN as user1@example.com: server closed the connection')
    assert out['smtp']['banner'].startswith('mx.test') and out['imap_capabilities'] and 'tag' not in out
    assert mailbox.messages == {}


def test_unexpected_error_is_one_line_with_the_partial_result(smtp_server, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError('boom')
    monkeypatch.setattr(_smoke, 'build_message', broken)
    rc, out = run(base(smtp_server()), capsys=capsys)
    assert rc == 1 and out['msg'] == 'mail_smoke failed unexpectedly: ValueError: boom'
    assert out['smtp']['banner'].startswith('mx.test')


# --------------------------------------------------------------------------- documentation

NOT_MODULE_KEYS = {'changed', 'failed', 'msg', 'invocation', 'warnings', 'deprecations', 'exception'}
TYPES = {'str': str, 'int': int, 'bool': bool, 'float': (int, float), 'list': list, 'dict': dict}


def _check_documented(value, spec, path, seen, problems):
    for key, sub in value.items():
        if not path and key in NOT_MODULE_KEYS:
            continue
        name = path + key
        doc = spec.get(key)
        if doc is None:
            problems.append('%s is returned but not documented in RETURN' % name)
            continue
        seen.add(name)
        wanted = TYPES[doc['type']]
        if sub is not None and (not isinstance(sub, wanted) or (doc['type'] == 'int' and isinstance(sub, bool))):
            problems.append('%s is %r, documented as %s' % (name, sub, doc['type']))
        if isinstance(sub, list) and doc.get('elements'):
            if not all(isinstance(item, TYPES[doc['elements']]) for item in sub):
                problems.append('%s has elements that are not %s: %r' % (name, doc['elements'], sub))
        if isinstance(sub, dict) and 'contains' in doc:
            _check_documented(sub, doc['contains'], name + '.', seen, problems)


def _documented_names(spec, path=''):
    for key, doc in spec.items():
        yield path + key
        yield from _documented_names(doc.get('contains') or {}, path + key + '.')


def test_return_documents_every_key_the_module_returns(smtp_server, imap_server, scripted_smtp, tls_files, capsys):
    """Run the module the ways it is used (and broken) and hold every key it
    returns, at any depth, against RETURN: its name and its type."""
    results = []
    imap = imap_server(USERS)
    results.append(run(base(smtp_server(), imap), capsys=capsys))
    results.append(run(base(smtp_server(), imap, delete=False), capsys=capsys))
    results.append(run(base(smtp_server(), imap), check_mode=True, capsys=capsys))
    results.append(run(base(smtp_server(refuse=('someone@elsewhere.example',)), rcpt_to=['someone@elsewhere.example'],
                            expect='rejected', expect_code='5xx'), capsys=capsys))
    results.append(run(base(smtp_server(refuse=('b@example.com',)), rcpt_to=['user1@example.com', 'b@example.com'],
                            expect='rejected'), capsys=capsys))
    results.append(run(base(smtp_server('starttls'), imap_server(USERS, 'starttls'), smtp_security='starttls',
                            imap_security='starttls', ca_path=tls_files[0], smtp_host='localhost'), capsys=capsys))
    results.append(run(base(scripted_smtp({'MAIL': ['421 4.7.0 Error: too many connections', CLOSE]})[0]),
                       capsys=capsys))
    results.append(run(base(smtp_server(), imap_server(USERS, faults={'UID STORE': ['{tag} NO read-only']})),
                       capsys=capsys))
    assert [rc for rc, _out in results] == [0, 0, 0, 0, 0, 0, 1, 1], results

    spec = yaml.safe_load(mail_smoke.RETURN)
    seen, problems = set(), []
    for _rc, out in results:
        _check_documented(out, spec, '', seen, problems)
    assert problems == []
    # And the scenarios above reach every documented key, so none is stale.
    assert set(_documented_names(spec)) - seen == set()
    for key, doc in spec.items():
        assert doc.get('returned'), '%s: RETURN says nothing of when it is returned' % key


def test_attributes_come_from_the_collection_fragment():
    doc = yaml.safe_load(mail_smoke.DOCUMENTATION)
    assert 'maillab.mailserver.attributes' in doc['extends_documentation_fragment']
    assert all('description' not in attr for attr in doc.get('attributes', {}).values()), \
        'attribute descriptions belong to maillab.mailserver.attributes'
    for name in doc['extends_documentation_fragment']:
        if name.startswith('maillab.mailserver.attributes.'):
            assert hasattr(ModuleDocFragment, name.rsplit('.', 1)[1].upper()), name


def test_ansible_doc_renders_the_module(ansible_doc):
    run_ = ansible_doc('-t', 'module', 'maillab.mailserver.mail_smoke')
    assert run_.returncode == 0, run_.stderr
    assert '> MODULE maillab.mailserver.mail_smoke' in run_.stdout
    assert 'ATTRIBUTES' in run_.stdout and 'RETURN VALUES' in run_.stdout
    assert '[WARNING]' not in run_.stderr and '[ERROR]' not in run_.stderr, run_.stderr

    run_ = ansible_doc('-t', 'module', '--json', 'maillab.mailserver.mail_smoke')
    assert run_.returncode == 0, run_.stderr
    doc = json.loads(run_.stdout)['maillab.mailserver.mail_smoke']['doc']
    fragment = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['attributes']
    for name, attr in fragment.items():
        assert doc['attributes'][name]['description'] == attr['description']
    assert doc['attributes']['check_mode']['support'] == 'full' and doc['attributes']['check_mode']['details']
    assert doc['attributes']['diff_mode']['support'] == 'none'
    assert doc['attributes']['idempotent']['support'] == 'full'
