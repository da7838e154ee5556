"""The level table (mailserver_levels in roles/common/defaults/main.yml) is
what each level runs: every scenario checks its running stack against the
row of its level, so the table, the roles and the tests cannot drift apart.
"""

from __future__ import annotations

import imaplib
import json
from pathlib import Path

import pytest
import yaml

from conftest import HOST

pytestmark = pytest.mark.level1

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def features(stack):
    table = yaml.safe_load((ROOT / 'roles' / 'common' / 'defaults' / 'main.yml').read_text())['mailserver_levels']
    assert stack.level in table, 'MAILLAB_LEVEL %r is not a row of mailserver_levels' % stack.level
    return table[stack.level]


def _running_services(stack):
    """org.maillab.service of every running container of the stack under test."""
    label = 'org.maillab.stack=' + (stack.prefix or 'default')
    out = stack.docker('ps', '--filter', 'label=' + label, '--format', '{{json .Labels}}').stdout
    services = []
    for line in out.splitlines():
        labels = dict(item.split('=', 1) for item in json.loads(line).split(',') if '=' in item)
        services.append(labels.get('org.maillab.service', '?'))
    return sorted(services)


def test_the_stack_runs_exactly_the_services_of_its_level(stack, features):
    assert _running_services(stack) == sorted(features['services'])


def test_submission_and_imaps_are_published_exactly_with_sql(stack, features):
    smtp_ports = stack.docker('port', stack.smtp).stdout
    assert ('587/tcp' in smtp_ports) == features['sql'], smtp_ports
    assert ('465/tcp' in smtp_ports) == features['sql'], smtp_ports
    if 'imap' in features['services']:
        imap_ports = stack.docker('port', stack.imap).stdout
        assert ('993/tcp' in imap_ports) == features['sql'], imap_ports


def test_imap_takes_cleartext_logins_exactly_where_the_table_says(stack, features):
    if 'imap' not in features['services']:
        # No IMAP server at all: nothing takes a login, in clear or not.
        assert stack.docker('ps', '-aq', '--filter', 'name=^/%s$' % stack.imap).stdout.strip() == ''
        return
    imap = imaplib.IMAP4(HOST, stack.imap_port, timeout=15)
    try:
        capabilities = imap.capabilities
    finally:
        imap.logout()
    assert ('LOGINDISABLED' not in capabilities) == features['cleartext_logins'], capabilities


def test_rspamd_is_a_milter_exactly_where_the_table_says(stack, features):
    milters = stack.host(stack.smtp).run('postconf -h smtpd_milters').stdout.strip()
    assert ('rspamd' in milters or ':11332' in milters) == features['rspamd'], milters
