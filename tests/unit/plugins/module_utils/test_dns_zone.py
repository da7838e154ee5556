"""The DNS records an operator publishes, checked the way a DNS operator
checks them: BIND's named-checkzone loads the zone, and what BIND loaded
(its canonical dump, read back with dnspython) holds the records we meant."""

from __future__ import annotations

import base64
import datetime
import hashlib
import shutil
import subprocess

import dns.rdatatype
import dns.zone
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ansible_collections.maillab.mailserver.plugins.module_utils import _dns_zone

DOMAIN = 'example.com'
MAIL_HOST = 'mail.example.com'
CLIENT_PORTS = {'imaps': 993, 'imap': 143, 'submissions': 465, 'submission': 587, 'managesieve': 4190}
SRV_NAMES = {'submissions': '_submissions._tcp', 'submission': '_submission._tcp', 'imaps': '_imaps._tcp',
             'imap': '_imap._tcp', 'managesieve': '_sieve._tcp'}


# --------------------------------------------------------------------------- helpers

@pytest.fixture(scope='session')
def checkzone():
    """The path of BIND's named-checkzone: the tests fail without it."""
    path = shutil.which('named-checkzone') or shutil.which('named-checkzone', path='/usr/sbin:/usr/bin')
    if not path:
        pytest.fail('named-checkzone is missing: `make deps` installs it (Debian package bind9-utils)')
    return path


@pytest.fixture
def load(checkzone, tmp_path):
    """load(domain, text) -> (named-checkzone's messages, the zone as BIND
    loaded it, read back by dnspython). Fails when BIND refuses the zone."""
    def run(domain, text):
        source, dump = tmp_path / ('%s.zone' % domain), tmp_path / ('%s.dump' % domain)
        source.write_text(text)
        done = subprocess.run([checkzone, '-D', '-o', str(dump), domain, str(source)],
                              capture_output=True, text=True, timeout=60)
        messages = done.stdout + done.stderr
        assert done.returncode == 0, 'named-checkzone refused the zone:\n%s\n%s' % (messages, text)
        return messages, dns.zone.from_text(dump.read_text(), origin=domain, relativize=False)
    return run


def rdatas(zone, name, rtype):
    """The records of one name and type, [] when there are none."""
    rdataset = zone.get_rdataset(name if name.endswith('.') else name + '.', rtype)
    return list(rdataset) if rdataset else []


def txt_values(zone, name):
    """The TXT records of a name, each one's strings joined."""
    return [b''.join(r.strings).decode() for r in rdatas(zone, name, 'TXT')]


def types_at(zone, name):
    node = zone.get_node(name if name.endswith('.') else name + '.')
    return sorted(dns.rdatatype.to_text(r.rdtype) for r in node.rdatasets) if node else []


def dkim_value(bits=2048):
    """A DKIM key record of a fresh RSA key, as the rspamd role makes it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return 'v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode()


def spki_sha256(cert):
    """The TLSA 3 1 1 data, computed here without the code under test."""
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def make_cert(host=MAIL_HOST):
    """A self-signed certificate for host: (certificate, its PEM, the key's PEM, the public key's PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), False)
                   .sign(key, hashes.SHA256()))
    return (certificate,
            certificate.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())


@pytest.fixture(scope='module')
def cert():
    """The mail host's certificate (see make_cert)."""
    return make_cert()


@pytest.fixture(scope='module')
def dkim_keys():
    return [('mail', dkim_value()), ('s2025', dkim_value())]


@pytest.fixture(scope='module')
def policy():
    return _dns_zone.mta_sts_policy([MAIL_HOST])


@pytest.fixture(scope='module')
def example(dkim_keys, policy, cert):
    """The options of the example.com zone: two DKIM keys, IPv4 and IPv6, MTA-STS, TLS-RPT, TLSA."""
    return dict(mail_host=MAIL_HOST, ipv4=['192.0.2.10'], ipv6=['2001:db8::10'], dkim=dkim_keys,
                dmarc_rua='dmarc-reports@example.com', tls_rpt_rua='tls-reports@example.com',
                mta_sts=_dns_zone.mta_sts_id(policy), client_ports=CLIENT_PORTS, tlsa=[_dns_zone.tlsa_311(cert[1])],
                serial=2025060101)


@pytest.fixture
def example_zone(load, example):
    """(the text, named-checkzone's messages, the loaded zone) of example.com."""
    text = _dns_zone.zone(DOMAIN, **example)
    messages, zone = load(DOMAIN, text)
    return text, messages, zone


# --------------------------------------------------------------------------- the zone BIND loads

def test_named_checkzone_accepts_the_example_zone_without_a_warning(example_zone):
    text, messages, zone = example_zone
    assert 'loaded serial 2025060101' in messages
    assert 'has no address' not in messages and 'warning' not in messages.lower(), messages
    assert text.startswith('; ') and '$ORIGIN example.com.\n$TTL 3600\n' in text
    assert "SOA and NS: your DNS provider's; the rest are the mail records to publish" in text.split('$ORIGIN')[0]
    soa = rdatas(zone, DOMAIN, 'SOA')[0]
    assert soa.serial == 2025060101 and str(soa.rname) == 'hostmaster.example.com.'


def test_every_record_line_is_absolute(example_zone):
    for line in example_zone[0].splitlines():
        if line and not line.startswith((';', '$')):
            owner, _class, rtype, data = line.split(None, 3)
            assert owner.endswith('.'), line
            if rtype in ('MX', 'SRV', 'CNAME', 'NS'):
                assert data.endswith('.'), line


def test_mx_and_spf(example_zone):
    zone = example_zone[2]
    assert [(r.preference, str(r.exchange)) for r in rdatas(zone, DOMAIN, 'MX')] == [(10, 'mail.example.com.')]
    spf = [v for v in txt_values(zone, DOMAIN) if v.startswith('v=spf1')]
    assert spf == ['v=spf1 mx -all']
    # The name the mail host greets with has its own SPF record.
    assert txt_values(zone, MAIL_HOST) == ['v=spf1 a -all']


def test_the_mail_host_has_its_addresses(example_zone):
    zone = example_zone[2]
    assert [r.address for r in rdatas(zone, MAIL_HOST, 'A')] == ['192.0.2.10']
    assert [r.address for r in rdatas(zone, MAIL_HOST, 'AAAA')] == ['2001:db8::10']


def test_dkim_records_join_to_the_input(example_zone, dkim_keys):
    zone = example_zone[2]
    for selector, value in dkim_keys:
        name = '%s._domainkey.%s' % (selector, DOMAIN)
        assert txt_values(zone, name) == [value]
        strings = rdatas(zone, name, 'TXT')[0].strings
        assert len(strings) == 2 and all(len(s) <= 255 for s in strings)


def test_dmarc(example_zone):
    assert txt_values(example_zone[2], '_dmarc.' + DOMAIN) == [
        'v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@example.com']


def test_mta_sts_and_tls_rpt(example_zone, policy):
    zone = example_zone[2]
    assert txt_values(zone, '_mta-sts.' + DOMAIN) == ['v=STSv1; id=%s' % _dns_zone.mta_sts_id(policy)]
    assert [str(r.target) for r in rdatas(zone, 'mta-sts.' + DOMAIN, 'CNAME')] == ['mail.example.com.']
    assert txt_values(zone, '_smtp._tls.' + DOMAIN) == ['v=TLSRPTv1; rua=mailto:tls-reports@example.com']


def test_srv_records_are_the_client_ports(example_zone):
    zone = example_zone[2]
    for service, label in SRV_NAMES.items():
        records = rdatas(zone, '%s.%s' % (label, DOMAIN), 'SRV')
        assert [(r.port, str(r.target)) for r in records] == [(CLIENT_PORTS[service], 'mail.example.com.')], service
    # Implicit TLS before STARTTLS (RFC 8314).
    assert rdatas(zone, '_imaps._tcp.' + DOMAIN, 'SRV')[0].priority < rdatas(zone, '_imap._tcp.' + DOMAIN,
                                                                             'SRV')[0].priority
    # POP3 is not served: "decidedly not available" (RFC 6186, 3.4).
    for label in ('_pop3._tcp', '_pop3s._tcp'):
        assert [r.to_text() for r in rdatas(zone, '%s.%s' % (label, DOMAIN), 'SRV')] == ['0 0 0 .']


def test_autoconfig_names(example_zone):
    zone = example_zone[2]
    for name in ('autoconfig', 'autodiscover'):
        assert types_at(zone, '%s.%s' % (name, DOMAIN)) == ['CNAME']
        assert str(rdatas(zone, '%s.%s' % (name, DOMAIN), 'CNAME')[0].target) == 'mail.example.com.'
    assert [(r.port, str(r.target)) for r in rdatas(zone, '_autodiscover._tcp.' + DOMAIN, 'SRV')] == [
        (443, 'mail.example.com.')]


def test_tlsa_is_the_sha256_of_the_certificates_key(example_zone, cert):
    records = rdatas(example_zone[2], '_25._tcp.' + MAIL_HOST, 'TLSA')
    assert [(r.usage, r.selector, r.mtype, r.cert.hex()) for r in records] == [(3, 1, 1, spki_sha256(cert[0]))]


def test_the_zone_is_deterministic(example):
    assert _dns_zone.zone(DOMAIN, **example) == _dns_zone.zone(DOMAIN, **example)


def test_a_mail_host_outside_the_domain_has_no_address_nor_tlsa_here(load, example):
    options = dict(example, dkim=[])
    text = _dns_zone.zone('example.org', **options)
    messages, zone = load('example.org', text)
    assert [str(r.exchange) for r in rdatas(zone, 'example.org', 'MX')] == ['mail.example.com.']
    for name in zone.nodes:
        types = types_at(zone, name.to_text())
        assert not {'A', 'AAAA', 'TLSA'} & set(types), (name, types)
    assert 'The mail host mail.example.com is outside example.org' in text and 'own zone' in text
    assert 'TLSA records of mail.example.com (DANE) are published in its own zone' in text
    assert 'A 192.0.2.10' in text  # the comment says which addresses the other zone publishes
    # The SRV records and the aliases still point to the mail host.
    assert str(rdatas(zone, '_imaps._tcp.example.org', 'SRV')[0].target) == 'mail.example.com.'
    assert str(rdatas(zone, 'autoconfig.example.org', 'CNAME')[0].target) == 'mail.example.com.'


def test_a_dmarc_address_elsewhere_names_the_record_its_domain_needs(load):
    text = _dns_zone.zone('example.org', mail_host='mail.example.org', ipv4='192.0.2.20',
                          dmarc_rua=['mailto:dmarc@example.org', 'reports@example.net'])
    _messages, zone = load('example.org', text)
    assert txt_values(zone, '_dmarc.example.org') == [
        'v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org,mailto:reports@example.net']
    assert 'example.org._report._dmarc.example.net. IN TXT "v=DMARC1"' in text


def test_nameservers_other_hosts_and_a_web_host(load):
    text = _dns_zone.zone(
        DOMAIN, mail_host=MAIL_HOST, ipv4='192.0.2.10', mx_hosts=[MAIL_HOST, 'mx2.example.com'], mx_priority=5,
        web_host='www.example.com', web_port=8443, mta_sts='abc123', nameservers=['ns1.example.com', 'ns.example.net'],
        hosts={'mx2.example.com': ['192.0.2.11', '2001:db8::11'], 'www.example.com': '192.0.2.12',
               'ns1.example.com': ['192.0.2.53'], 'other.example.net': ['192.0.2.99']},
        soa_email='dns.admin@example.com', ttl=300, client_ports={'imaps': 993, 'submissions': 465})
    messages, zone = load(DOMAIN, text)
    assert 'has no address' not in messages
    assert sorted(str(r.target) for r in rdatas(zone, DOMAIN, 'NS')) == ['ns.example.net.', 'ns1.example.com.']
    soa = rdatas(zone, DOMAIN, 'SOA')[0]
    assert str(soa.mname) == 'ns1.example.com.' and soa.rname.to_text() == 'dns\\.admin.example.com.'
    assert sorted((r.preference, str(r.exchange)) for r in rdatas(zone, DOMAIN, 'MX')) == [
        (5, 'mail.example.com.'), (15, 'mx2.example.com.')]
    assert [r.address for r in rdatas(zone, 'mx2.example.com', 'AAAA')] == ['2001:db8::11']
    assert str(rdatas(zone, 'mta-sts.' + DOMAIN, 'CNAME')[0].target) == 'www.example.com.'
    assert [(r.port, str(r.target)) for r in rdatas(zone, '_autodiscover._tcp.' + DOMAIN, 'SRV')] == [
        (8443, 'www.example.com.')]
    # Services left out of client_ports are not offered.
    assert [r.to_text() for r in rdatas(zone, '_imap._tcp.' + DOMAIN, 'SRV')] == ['0 0 0 .']
    assert [r.to_text() for r in rdatas(zone, '_sieve._tcp.' + DOMAIN, 'SRV')] == ['0 0 0 .']
    assert zone.get_node('other.example.net.') is None and 'other.example.net is outside example.com' in text
    assert 'Placeholders' not in text and '$TTL 300\n' in text


def test_without_optional_records(load):
    text = _dns_zone.zone(DOMAIN, mail_host=MAIL_HOST, ipv6='2001:db8::10', autoconfig=False)
    messages, zone = load(DOMAIN, text)
    for name in ('autoconfig', 'autodiscover', 'mta-sts', '_mta-sts', '_smtp._tls', '_autodiscover._tcp'):
        assert zone.get_node('%s.%s.' % (name, DOMAIN)) is None, name
    assert zone.get_node('_25._tcp.%s.' % MAIL_HOST) is None
    assert txt_values(zone, '_dmarc.' + DOMAIN) == ['v=DMARC1; p=quarantine']
    # No name server given: a placeholder that can never resolve, and the zone says so.
    assert [str(r.target) for r in rdatas(zone, DOMAIN, 'NS')] == ['ns1.dns-provider.invalid.']
    assert 'Placeholders' in text


def test_empty_texts_are_options_left_out():
    assert _dns_zone.zone(DOMAIN, mail_host=MAIL_HOST, ipv4='192.0.2.10', ipv6='', mx_hosts='', dmarc_rua='',
                          tls_rpt_rua='', mta_sts='', web_host='', tlsa='', hosts='', nameservers='', soa_email='',
                          dkim='') == _dns_zone.zone(DOMAIN, mail_host=MAIL_HOST, ipv4='192.0.2.10')


def test_a_mail_host_at_the_apex_has_one_spf_record(load):
    text = _dns_zone.zone(DOMAIN, mail_host=DOMAIN, ipv4='192.0.2.10', tlsa=['ab' * 32])
    _messages, zone = load(DOMAIN, text)
    assert [v for v in txt_values(zone, DOMAIN) if v.startswith('v=spf1')] == ['v=spf1 mx -all']
    assert [r.address for r in rdatas(zone, DOMAIN, 'A')] == ['192.0.2.10']
    assert rdatas(zone, '_25._tcp.' + DOMAIN, 'TLSA')[0].cert.hex() == 'ab' * 32


def test_txt_values_are_escaped_and_split_by_bytes(load):
    value = 'v=DKIM1; n="quoted \\ back"; é; p=' + 'Q' * 300
    text = _dns_zone.zone(DOMAIN, mail_host=MAIL_HOST, ipv4='192.0.2.10', dkim=[{'selector': 'odd', 'value': value}])
    _messages, zone = load(DOMAIN, text)
    strings = rdatas(zone, 'odd._domainkey.' + DOMAIN, 'TXT')[0].strings
    assert b''.join(strings).decode('utf-8') == value and max(len(s) for s in strings) == 255


def test_tlsa_ports(load):
    text = _dns_zone.zone(DOMAIN, mail_host=MAIL_HOST, ipv4='192.0.2.10', tlsa=['AB' * 32, 'cd' * 32],
                          tlsa_ports=[25, 465])
    _messages, zone = load(DOMAIN, text)
    for port in (25, 465):
        assert sorted(r.cert.hex() for r in rdatas(zone, '_%d._tcp.%s' % (port, MAIL_HOST), 'TLSA')) == [
            'ab' * 32, 'cd' * 32]


# --------------------------------------------------------------------------- MTA-STS

def test_mta_sts_policy_text():
    assert _dns_zone.mta_sts_policy(['Mail.Example.com.', '*.example.net', 'mail.example.com'], 'testing', '86400') == (
        'version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n')
    assert _dns_zone.mta_sts_policy('mail.example.com') == (
        'version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n')
    assert _dns_zone.mta_sts_policy([], mode='none', max_age=0) == 'version: STSv1\r\nmode: none\r\nmax_age: 0\r\n'


def test_mta_sts_id_follows_the_policy(policy):
    first = _dns_zone.mta_sts_id(policy)
    assert first.isalnum() and 1 <= len(first) <= 32
    assert _dns_zone.mta_sts_id(_dns_zone.mta_sts_policy([MAIL_HOST])) == first
    assert _dns_zone.mta_sts_id(policy.replace('\r\n', '\n')) == first
    other_mx = _dns_zone.mta_sts_id(_dns_zone.mta_sts_policy([MAIL_HOST, 'mx2.example.com']))
    other_mode = _dns_zone.mta_sts_id(_dns_zone.mta_sts_policy([MAIL_HOST], 'testing'))
    assert len({first, other_mx, other_mode}) == 3


def test_the_zone_id_changes_when_the_mx_list_changes(load):
    ids = []
    for mx_hosts in (['mail.example.com'], ['mail.example.com', 'mail.example.net']):
        policy_id = _dns_zone.mta_sts_id(_dns_zone.mta_sts_policy(mx_hosts))
        text = _dns_zone.zone(DOMAIN, mail_host=MAIL_HOST, ipv4='192.0.2.10', mx_hosts=mx_hosts, mta_sts=policy_id)
        ids.append(txt_values(load(DOMAIN, text)[1], '_mta-sts.' + DOMAIN))
    assert ids[0] != ids[1]


@pytest.mark.parametrize('args,kwargs,named', [
    ((['mail.example.com'],), {'mode': 'bogus'}, "'bogus'"),
    ((['mail.example.com'],), {'max_age': -1}, '-1'),
    ((['mail.example.com'],), {'max_age': 31557601}, '31557601'),
    ((['mail.example.com'],), {'max_age': True}, 'True'),
    ((['exa mple.com'],), {}, "'exa mple.com'"),
    (([],), {}, 'at least one MX host'),
])
def test_mta_sts_policy_refuses(args, kwargs, named):
    with pytest.raises(ValueError) as err:
        _dns_zone.mta_sts_policy(*args, **kwargs)
    assert named in str(err.value)


def test_mta_sts_id_refuses_what_is_no_policy():
    with pytest.raises(ValueError, match='version: STSv1'):
        _dns_zone.mta_sts_id('mode: enforce')


# --------------------------------------------------------------------------- TLSA

def test_tlsa_311_of_a_certificate_and_its_keys(cert):
    certificate, cert_pem, key_pem, public_pem = cert
    expected = spki_sha256(certificate)
    assert _dns_zone.tlsa_311(cert_pem) == expected
    assert _dns_zone.tlsa_311(cert_pem.encode()) == expected
    assert _dns_zone.tlsa_311(key_pem) == expected
    assert _dns_zone.tlsa_311(public_pem) == expected
    # A chain file: the server's own certificate comes first, then its issuer's.
    issuer_pem = make_cert('ca.example.com')[1]
    assert _dns_zone.tlsa_311(cert_pem + issuer_pem) == expected
    assert _dns_zone.tlsa_311(issuer_pem) != expected


def test_tlsa_311_of_an_rsa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    traditional = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert 'BEGIN RSA PRIVATE KEY' in traditional
    assert _dns_zone.tlsa_311(traditional) == hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize('pem,message', [
    ('', 'no PEM block'),
    ('just text', 'no PEM block'),
    ('-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n', 'CERTIFICATE cannot be read'),
    ('-----BEGIN CERTIFICATE-----\nMIIB\n', 'no END line'),
    ('-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n', 'ENCRYPTED PRIVATE KEY'),
    ('-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n', 'X509 CRL cannot be used'),
])
def test_tlsa_311_refuses(pem, message):
    with pytest.raises(ValueError, match='tlsa_311') as err:
        _dns_zone.tlsa_311(pem)
    assert message in str(err.value)


def test_tlsa_311_never_echoes_a_private_key():
    secret = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7'
    with pytest.raises(ValueError) as err:
        _dns_zone.tlsa_311('-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n' % secret)
    assert secret not in str(err.value)


# --------------------------------------------------------------------------- DKIM key files

def rspamd_txt(selector, domain, value):
    """What maillab-rspamd-dkim writes (its txt_record: strings of 255 characters)."""
    strings = ' '.join('"%s"' % value[i:i + 255] for i in range(0, len(value), 255))
    return '%s._domainkey.%s. IN TXT %s\n' % (selector, domain, strings)


def test_dkim_records_from_the_rspamd_files(dkim_keys, load):
    text = ''.join(rspamd_txt(selector, DOMAIN, value) for selector, value in dkim_keys)
    records = _dns_zone.dkim_records_from_txt(text)
    assert records == dkim_keys
    # What the files hold, published in the zone, is what the files hold.
    zone = load(DOMAIN, _dns_zone.zone(DOMAIN, mail_host=MAIL_HOST, ipv4='192.0.2.10', dkim=records))[1]
    assert txt_values(zone, 'mail._domainkey.' + DOMAIN) == [dkim_keys[0][1]]


def test_dkim_records_of_one_domain(dkim_keys):
    text = rspamd_txt('mail', 'example.org', 'v=DKIM1; k=rsa; p=ORG') + rspamd_txt('mail', DOMAIN, dkim_keys[0][1])
    assert _dns_zone.dkim_records_from_txt(text, domain='Example.COM') == [('mail', dkim_keys[0][1])]
    assert _dns_zone.dkim_records_from_txt(text, domain='example.org') == [('mail', 'v=DKIM1; k=rsa; p=ORG')]
    assert _dns_zone.dkim_records_from_txt(text, domain='example.net') == []


def test_dkim_records_in_the_multi_line_form():
    # rspamadm dkim_keygen / opendkim-genkey: relative owner, parentheses, comments.
    text = ('mail._domainkey IN TXT ( "v=DKIM1; k=rsa; "\n'
            '\t"p=MIIBIjAN" \n'
            '\t"BgkqhkiG9w0" ) ; ----- DKIM key mail for example.com\n')
    assert _dns_zone.dkim_records_from_txt(text, domain=DOMAIN) == [('mail', 'v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0')]
    escaped = 's1._domainkey.example.com. 3600 IN TXT "v=DKIM1; n=\\"a\\;b\\"; p=\\065BC"\n'
    assert _dns_zone.dkim_records_from_txt(escaped) == [('s1', 'v=DKIM1; n="a;b"; p=ABC')]


def test_dkim_records_refuse_what_holds_none():
    assert _dns_zone.dkim_records_from_txt('') == []
    with pytest.raises(ValueError, match='no "<selector>._domainkey'):
        _dns_zone.dkim_records_from_txt('-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n')
    with pytest.raises(ValueError, match='not a DKIM key record'):
        _dns_zone.dkim_records_from_txt('mail._domainkey.example.com. IN TXT "v=spf1 -all"\n')
    with pytest.raises(ValueError, match='not closed'):
        _dns_zone.dkim_records_from_txt('mail._domainkey.example.com. IN TXT "v=DKIM1; p=abc\n')


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize('domain,options,named', [
    ('exa mple', {}, "domain: 'exa mple'"),
    ('example.com', {'mail_host': 'mail_1.example.com'}, "mail_host: 'mail_1.example.com'"),
    ('localhost', {}, "domain: 'localhost'"),
    ('192.0.2.1', {}, "'192.0.2.1'"),
    ('bücher.example', {}, 'xn--'),
    ('example.com', {'ipv4': '2001:db8::1'}, "ipv4: '2001:db8::1' is not an IPv4 address"),
    ('example.com', {'ipv6': 'fe80::zz'}, "ipv6: 'fe80::zz'"),
    ('example.com', {'mx_priority': 70000}, 'mx_priority: 70000'),
    ('example.com', {'dmarc_policy': 'bogus'}, "dmarc_policy: 'bogus'"),
    ('example.com', {'dmarc_rua': 'not an address'}, "dmarc_rua: 'not an address'"),
    ('example.com', {'tls_rpt_rua': 'https://x.example.com/a,b'}, 'tls_rpt_rua'),
    ('example.com', {'mta_sts': 'has-dash'}, "mta_sts: 'has-dash'"),
    ('example.com', {'client_ports': {'pop2': 109}}, "client_ports: 'pop2'"),
    ('example.com', {'client_ports': {'imaps': 99999}}, 'client_ports.imaps: 99999'),
    ('example.com', {'tlsa': ['abc']}, "tlsa: 'abc'"),
    ('example.com', {'tlsa_ports': [0]}, 'tlsa_ports: 0'),
    ('example.com', {'dkim': [('mail', 'no key here')]}, "selector mail, 'no key here'"),
    ('example.com', {'dkim': [('bad selector', 'p=abc')]}, "'bad selector'"),
    ('example.com', {'dkim': [('mail', 'p=a'), ('MAIL', 'p=b')]}, 'selector mail is given twice'),
    ('example.com', {'serial': 2 ** 32}, 'serial: 4294967296'),
    ('example.com', {'ttl': 'soon'}, "ttl: 'soon'"),
    ('example.com', {'soa_email': 'hostmaster'}, "soa_email: 'hostmaster'"),
    ('example.com', {'autoconfig': 'yes'}, "autoconfig: 'yes'"),
    ('example.com', {'hosts': {'www.example.com': 'nowhere'}}, "hosts.www.example.com: 'nowhere'"),
    ('example.com', {'hosts': {'Mail.example.com.': ['192.0.2.1']}}, 'hosts: mail.example.com is the mail host'),
])
def test_zone_refuses_bad_values_naming_them(domain, options, named):
    options = dict({'mail_host': 'mail.example.com', 'ipv4': '192.0.2.10'}, **options)
    with pytest.raises(ValueError) as err:
        _dns_zone.zone(domain, **options)
    assert named in str(err.value)


@pytest.mark.parametrize('options,named', [
    ({'ipv4': ()}, 'mail_host: mail.example.com is inside example.com but the zone has no address for it'),
    ({'mx_hosts': ['mx2.example.com']}, 'mx_hosts: mx2.example.com is inside example.com'),
    ({'web_host': 'www.example.com'}, 'web_host: www.example.com is inside example.com'),
    ({'nameservers': 'ns1.example.com'}, 'nameservers: ns1.example.com is inside example.com'),
    ({'mail_host': 'autoconfig.example.com'}, 'autoconfig.example.com is also the alias'),
    ({'web_host': 'mta-sts.example.com', 'mta_sts': 'abc'}, 'web_host: mta-sts.example.com is also the alias'),
])
def test_zone_refuses_what_named_checkzone_would(options, named):
    """A zone BIND would refuse (an in-zone target without address, a CNAME
    beside other data) is never printed."""
    options = dict({'mail_host': 'mail.example.com', 'ipv4': '192.0.2.10'}, **options)
    with pytest.raises(ValueError) as err:
        _dns_zone.zone(DOMAIN, **options)
    assert named in str(err.value)


def test_an_alias_is_no_conflict_when_autoconfig_is_off(load):
    text = _dns_zone.zone(DOMAIN, mail_host='autoconfig.example.com', ipv4='192.0.2.10', autoconfig=False)
    assert [r.address for r in rdatas(load(DOMAIN, text)[1], 'autoconfig.example.com', 'A')] == ['192.0.2.10']
