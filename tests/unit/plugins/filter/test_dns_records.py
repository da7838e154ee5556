"""The DNS filters: what playbooks get, and AnsibleFilterError with the
reason for bad input (the records themselves: module_utils/test_dns_zone)."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.maillab.mailserver.plugins.filter import dns_records
from ansible_collections.maillab.mailserver.plugins.module_utils import _dns_zone

TXT = 'mail._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; " "p=MIIBIjAN"\n'


def test_the_filters_are_exported():
    assert sorted(dns_records.FilterModule().filters()) == [
        'dkim_records', 'dns_zone', 'mta_sts_id', 'mta_sts_policy', 'tlsa_311']


def test_dkim_records_are_mappings_the_zone_takes():
    records = dns_records.dkim_records(TXT, 'example.com')
    assert records == [{'selector': 'mail', 'value': 'v=DKIM1; k=rsa; p=MIIBIjAN'}]
    zone = dns_records.dns_zone('example.com', mail_host='mail.example.com', ipv4='192.0.2.10', dkim=records)
    assert re.search(r'^mail\._domainkey\.example\.com\. +IN TXT +"v=DKIM1; k=rsa; p=MIIBIjAN"$', zone, re.M)
    assert zone == _dns_zone.zone('example.com', mail_host='mail.example.com', ipv4='192.0.2.10',
                                  dkim=[('mail', 'v=DKIM1; k=rsa; p=MIIBIjAN')])


def test_mta_sts_filters():
    policy = dns_records.mta_sts_policy(['mail.example.com'], 'testing', 86400)
    assert policy == 'version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 86400\r\n'
    assert dns_records.mta_sts_id(policy) == _dns_zone.mta_sts_id(policy)


def test_tlsa_311_filter(tls_files):
    with open(tls_files[0]) as handle:
        pem = handle.read()
    assert dns_records.tlsa_311(pem) == _dns_zone.tlsa_311(pem)


@pytest.mark.parametrize('call,message', [
    (lambda: dns_records.mta_sts_policy(['mail.example.com'], 'bogus'), "mta_sts_policy: MTA-STS mode: 'bogus'"),
    (lambda: dns_records.mta_sts_policy(['mail.example.com'], max_age=-1), "max_age: -1"),
    (lambda: dns_records.mta_sts_id('not a policy'), 'mta_sts_id: '),
    (lambda: dns_records.tlsa_311('no pem'), 'tlsa_311 needs a PEM certificate or key'),
    (lambda: dns_records.dkim_records('junk'), 'dkim_records: DKIM record: no'),
    (lambda: dns_records.dns_zone('exa mple', mail_host='mail.example.com'), "dns_zone: domain: 'exa mple'"),
    (lambda: dns_records.dns_zone('example.com', mail_host='mail.example.com'),
     'dns_zone: mail_host: mail.example.com is inside example.com but the zone has no address'),
    (lambda: dns_records.dns_zone('example.com', ipv4='192.0.2.10'), 'dns_zone: mail_host (the host name'),
    (lambda: dns_records.dns_zone('example.com', mail_host='mail.example.com', ipv4='192.0.2.10', dkim_keys=[]),
     'dns_zone: unknown option dkim_keys; the options are mail_host, ipv4,'),
])
def test_bad_input_is_an_ansible_filter_error(call, message):
    with pytest.raises(AnsibleFilterError) as err:
        call()
    assert message in str(err.value)
