"""Level 3 on, as the people who read the mail meet it: their own Sieve
filters over ManageSieve (TLS before any login), and mail programs that find
the server by themselves (Thunderbird's autoconfig, Outlook's autodiscover,
Apple's profile) for every hosted domain, the database's included."""

from __future__ import annotations

import imaplib
import os
import plistlib
import smtplib
import ssl
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

import mailclient
from mailclient import HOST, ManageSieve, compose, env_port, sasl_mechanisms

pytestmark = pytest.mark.level3

USER, PASSWORD = 'user1@example.com', 'password'


def test_managesieve_refuses_authentication_before_starttls(tls):
    session = ManageSieve(env_port('MANAGESIEVE'))
    try:
        assert any(line.upper().startswith('"STARTTLS"') for line in session.capabilities), session.capabilities
        assert sasl_mechanisms(session.capabilities) == [], 'SASL offered before TLS: %s' % session.capabilities
        status, _lines, line = session.authenticate(USER, PASSWORD)
        assert status == 'NO', 'a login before STARTTLS was accepted: %s' % line
    finally:
        session.close()


def test_a_sieve_filter_set_over_managesieve_files_mail_into_a_folder(stack, tls, tag):
    folder = 'Filtered'
    script = ('require ["fileinto", "mailbox"];\r\n'
              'if header :contains "subject" "sieve-%s" {\r\n'
              '  fileinto :create "%s";\r\n'
              '}\r\n' % (tag, folder))
    session = ManageSieve(env_port('MANAGESIEVE'))
    try:
        session.starttls(tls)
        assert 'PLAIN' in sasl_mechanisms(session.capabilities), session.capabilities
        status, _lines, line = session.authenticate(USER, PASSWORD)
        assert status == 'OK', 'ManageSieve login after STARTTLS failed: %s' % line
        status, _lines, line = session.putscript('maillab-test', script)
        assert status == 'OK', 'PUTSCRIPT refused: %s' % line
        status, _lines, line = session.command('SETACTIVE "maillab-test"')
        assert status == 'OK', 'SETACTIVE refused: %s' % line
        try:
            subject = 'sieve-%s' % tag
            smtp = smtplib.SMTP(HOST, stack.smtp_port, timeout=30)
            smtp.sendmail('test@example.com', [USER], compose('test@example.com', USER, subject, 'filtered ' + tag))
            smtp.quit()
            imap = mailclient.imaps_login(tls, USER, PASSWORD)
            try:
                # The filter makes the folder at delivery (fileinto :create).
                deadline = time.monotonic() + 20
                while imap.select(folder)[0] != 'OK' and time.monotonic() < deadline:
                    time.sleep(0.2)
                uids = mailclient.wait_uids(imap, 'SUBJECT', subject, mailbox=folder, timeout=20)
                assert uids, 'the filter did not file the message into %s' % folder
                imap.select('INBOX')
                _typ, data = imap.uid('SEARCH', 'SUBJECT', subject)
                assert not data[0], 'the filtered message is in INBOX too'
            finally:
                imap.logout()
        finally:
            session.command('SETACTIVE ""')
            session.command('DELETESCRIPT "maillab-test"')
    finally:
        session.close()


# --- Client autoconfiguration -------------------------------------------------

def curl(*args):
    """curl as a person runs it, trusting the lab CA; returns (status, body)."""
    out = subprocess.run(['curl', '-sS', '--max-time', '20', '--cacert', os.environ['MAILLAB_CA'],
                          '-o', '-', '-w', '\n%{http_code}', *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, 'curl %s failed: %s' % (' '.join(args), out.stderr.strip())
    body, _, status = out.stdout.rpartition('\n')
    return int(status), body


def resolve(name, port):
    """curl's --resolve: the name points at the loopback address of the stack."""
    return '--resolve', '%s:%d:%s' % (name, port, HOST)


def expected_servers():
    """(kind, port, socket type) the stack publishes for mail programs."""
    return {('imap', env_port('IMAPS'), 'SSL'), ('imap', env_port('IMAP'), 'STARTTLS'),
            ('smtp', env_port('SMTPS'), 'SSL'), ('smtp', env_port('SUBMISSION'), 'STARTTLS')}


def thunderbird_servers(body):
    root = ET.fromstring(body)
    provider = root.find('emailProvider')
    servers = set()
    names = set()
    for node in list(provider.findall('incomingServer')) + list(provider.findall('outgoingServer')):
        servers.add((node.get('type'), int(node.findtext('port')), node.findtext('socketType')))
        names.add(node.findtext('hostname'))
        assert node.findtext('username') == '%EMAILADDRESS%'
    return provider, names, servers


def test_thunderbird_finds_the_server_by_autoconfig_host_name_and_logs_in(stack):
    port = env_port('ADMIN')
    host = 'autoconfig.' + stack.domain
    status, body = curl(*resolve(host, port), 'https://%s:%d/mail/config-v1.1.xml?emailaddress=%s' % (host, port, USER))
    assert status == 200, body
    provider, names, servers = thunderbird_servers(body)
    assert provider.findtext('domain') == stack.domain
    assert servers == expected_servers(), 'autoconfig names %s' % sorted(servers)
    assert len(names) == 1
    name = names.pop()
    # What Thunderbird does next: connect to each named server by that name
    # (which points at loopback here), verify its certificate and log in.
    context = ssl_for(name)
    for kind, server_port, socket_type in sorted(servers):
        client = OPENERS[kind, socket_type](server_port, context)
        client.login(USER, PASSWORD)
        client.logout() if kind == 'imap' else client.quit()


def _after(client, method, **kwargs):
    getattr(client, method)(**kwargs)
    return client


# How a mail program opens each (server kind, socket type) of the autoconfig file.
OPENERS = {
    ('imap', 'SSL'): lambda port, context: imaplib.IMAP4_SSL(HOST, port, ssl_context=context, timeout=15),
    ('imap', 'STARTTLS'): lambda port, context: _after(imaplib.IMAP4(HOST, port, timeout=15), 'starttls',
                                                       ssl_context=context),
    ('smtp', 'SSL'): lambda port, context: smtplib.SMTP_SSL(HOST, port, context=context, timeout=15),
    ('smtp', 'STARTTLS'): lambda port, context: _after(smtplib.SMTP(HOST, port, timeout=15), 'starttls',
                                                       context=context),
}


def ssl_for(name):
    """The lab CA's trust, checking the certificate against `name` while the
    connection goes to loopback (as if DNS pointed `name` there)."""
    context = ssl.create_default_context(cafile=os.environ['MAILLAB_CA'])
    wrap_socket = context.wrap_socket

    def wrap(sock, *args, **kwargs):
        kwargs['server_hostname'] = name
        return wrap_socket(sock, *args, **kwargs)
    context.wrap_socket = wrap
    return context


def test_autoconfig_over_plain_http_on_the_autoconfig_host(stack):
    port = env_port('ADMIN_HTTP')
    host = 'autoconfig.' + stack.domain
    status, body = curl(*resolve(host, port), 'http://%s:%d/mail/config-v1.1.xml' % (host, port))
    assert status == 200, 'Thunderbird asks autoconfig.<domain> over HTTP too; got %d' % status
    assert thunderbird_servers(body)[2] == expected_servers()
    # Everything else on plain HTTP still goes to HTTPS.
    status, _body = curl('http://%s:%d/login.php' % (HOST, port))
    assert status == 301


def test_well_known_autoconfig_answers_for_a_domain_made_in_the_database(database_domain):
    port = env_port('ADMIN')
    address = 'someone@' + database_domain
    status, body = curl('https://localhost:%d/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=%s'
                        % (port, address))
    assert status == 200, body
    provider, _names, servers = thunderbird_servers(body)
    assert provider.findtext('domain') == database_domain
    assert servers == expected_servers()


def test_autoconfig_refuses_a_domain_not_hosted_here():
    port = env_port('ADMIN')
    status, body = curl('https://localhost:%d/.well-known/autoconfig/mail/config-v1.1.xml'
                        '?emailaddress=someone@not-hosted.example' % port)
    assert status == 404, body
    status, body = curl('https://localhost:%d/.well-known/autoconfig/mail/config-v1.1.xml'
                        '?emailaddress=%s' % (port, '%3Cscript%3E@example.com'))
    assert status == 400, body


def test_outlook_autodiscover_names_the_servers(stack):
    port = env_port('ADMIN')
    host = 'autodiscover.' + stack.domain
    request = ('<?xml version="1.0" encoding="utf-8"?>'
               '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
               '<Request><EMailAddress>%s</EMailAddress>'
               '<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/'
               'responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>' % USER)
    status, body = curl(*resolve(host, port), '-H', 'Content-Type: text/xml', '--data-binary', request,
                        'https://%s:%d/Autodiscover/Autodiscover.xml' % (host, port))
    assert status == 200, body
    ns = {'r': 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a'}
    protocols = {p.findtext('r:Type', namespaces=ns): p for p in ET.fromstring(body).iter('{%s}Protocol' % ns['r'])}
    assert set(protocols) == {'IMAP', 'SMTP'}
    for kind, port_name in (('IMAP', 'IMAPS'), ('SMTP', 'SMTPS')):
        proto = protocols[kind]
        assert proto.findtext('r:Server', namespaces=ns) == 'mail.' + stack.domain
        assert int(proto.findtext('r:Port', namespaces=ns)) == env_port(port_name)
        assert proto.findtext('r:SSL', namespaces=ns) == 'on'
        assert proto.findtext('r:LoginName', namespaces=ns) == USER


def test_apple_profile_download(stack):
    port = env_port('ADMIN')
    status, body = curl('-D', '-', 'https://localhost:%d/mobileconfig?emailaddress=%s' % (port, USER))
    assert status == 200, body
    # curl's text output: header lines end with a bare newline here.
    headers, _, payload = body.partition('\n\n')
    assert 'application/x-apple-aspen-config' in headers
    assert 'attachment' in headers and '.mobileconfig' in headers
    profile = plistlib.loads(payload.encode('utf-8'))
    account = profile['PayloadContent'][0]
    assert account['EmailAddress'] == USER
    assert account['IncomingMailServerHostName'] == 'mail.' + stack.domain
    assert account['IncomingMailServerPortNumber'] == env_port('IMAPS')
    assert account['OutgoingMailServerPortNumber'] == env_port('SMTPS')
    assert account['IncomingMailServerUseSSL'] is True
    # No password travels in the profile: the device asks for it.
    assert not {'IncomingPassword', 'OutgoingPassword'} & set(account), sorted(account)
