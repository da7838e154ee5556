# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DNS records an operator publishes for a hosted mail domain.

Pure functions, no Ansible: the zone file text of one domain (MX, SPF, DKIM,
DMARC, MTA-STS, TLS reporting, the SRV records mail programs look up,
autoconfiguration names, DANE TLSA), the MTA-STS policy and its id, the
TLSA digest of a certificate, and the DKIM records of the key files the
rspamd container writes. The zone is written so that BIND's
``named-checkzone <domain> <file>`` loads it without an error: every name is
absolute, every host a record points to inside the zone has its addresses
in the zone, and a name with a CNAME holds nothing else. Bad input is a
ValueError whose message names the parameter and the value.

Only ``tlsa_311`` needs a package beyond the standard library:
``cryptography`` (a dependency of ansible-core, pinned in requirements.txt).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional, Union

try:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
except ImportError:  # reported by tlsa_311 with an actionable message
    x509 = None

# RFC 8461, 3.2: the policy's modes and the longest max_age (one year).
STS_MODES = ('enforce', 'testing', 'none')
STS_MAX_AGE = 31557600
# RFC 7489, 6.3: what a receiver does with mail that fails DMARC.
DMARC_POLICIES = ('none', 'quarantine', 'reject')

# The services of mailserver_client_ports as mail programs look them up
# (RFC 6186 and RFC 8314; ManageSieve: RFC 5804), in the order the zone
# lists them, with the SRV priority: implicit TLS before STARTTLS (RFC 8314,
# 5.1), which RFC 6186, 3.4 lets a client compare across services. POP3 is
# not served by the stack: with no port its records say "not offered".
SRV_SERVICES = (
    ('submissions', '_submissions._tcp', 0),
    ('submission', '_submission._tcp', 10),
    ('imaps', '_imaps._tcp', 0),
    ('imap', '_imap._tcp', 10),
    ('pop3s', '_pop3s._tcp', 0),
    ('pop3', '_pop3._tcp', 10),
    ('managesieve', '_sieve._tcp', 0),
)
# The ports the stack publishes for mail programs (mailserver_client_ports' defaults).
DEFAULT_CLIENT_PORTS = {'imaps': 993, 'imap': 143, 'submissions': 465, 'submission': 587, 'managesieve': 4190}

# The SOA timers: refresh, retry, expire, negative-answer TTL (RIPE-203's,
# with a one-hour negative TTL).
SOA_TIMERS = (86400, 7200, 3600000, 3600)
# The name server written when the caller gives none: a name that can never
# resolve (RFC 2606), marked as a placeholder in the zone.
PLACEHOLDER_NAMESERVER = 'ns1.dns-provider.invalid'

# A label of a host name: letters, digits, inner hyphens, at most 63.
_LABEL = re.compile(r'^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$')
_HEX_SHA256 = re.compile(r'^[0-9a-f]{64}$')
_STS_ID = re.compile(r'^[A-Za-z0-9]{1,32}$')
# The local part of an address in a mailto: URI or the SOA's mailbox:
# nothing a URI list or the zone file would read as a separator.
_LOCAL_PART = re.compile(r'^[A-Za-z0-9._%+=-]+$')
_HTTPS_URI = re.compile(r'^https://[^\s,;!"]+$')
_DKIM_KEY_TAG = re.compile(r'(?:^|;)\s*p\s*=')

Pairs = Iterable[Union[Sequence[str], Mapping[str, str]]]


# --------------------------------------------------------------------------- validation

def host_name(value: object, what: str = 'host name', wildcard: bool = False) -> str:
    """value as a lower-case host name without the final dot.

    A host name has at least two labels of letters, digits and inner
    hyphens (63 characters at most each, 253 in all) and does not end with
    a numeric label (an IPv4 address is not a host name). With wildcard,
    a leading '*.' is kept (an MTA-STS mx pattern). An internationalized
    name must be given in its A-label (xn--) form. Raises ValueError naming
    what and the value.
    """
    if not isinstance(value, str):
        raise ValueError('%s: %r is not a host name (a text such as mail.example.com is needed)' % (what, value))
    name = value.strip().lower()
    if name.endswith('.'):
        name = name[:-1]
    star = ''
    if wildcard and name.startswith('*.'):
        star, name = '*.', name[2:]
    labels = name.split('.')
    if (len(labels) < 2 or len(name) > 253 or not all(_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        hint = ' (write an internationalized name in its xn-- form)' if not name.isascii() else ''
        raise ValueError('%s: %r is not a host name: it needs two labels or more of letters, digits and inner '
                         'hyphens, such as mail.example.com%s' % (what, value, hint))
    return star + name


def _integer(value: object, what: str, low: int, high: int) -> int:
    """value as an int from low to high; a digit string counts, a bool does not."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.match(r'^\s*-?[0-9]+\s*$', value):
        number = int(value)
    if number is None or not low <= number <= high:
        raise ValueError('%s: %r is not a whole number from %d to %d' % (what, value, low, high))
    return number


def _items(value: object, what: str) -> list:
    """A list from None or a blank text (none), one text (one item) or any
    iterable other than a mapping."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise ValueError('%s: %r is not a list' % (what, value))
    return list(value)


def _unique(values: Iterable) -> list:
    """values without repeats, in first-seen order."""
    return list(dict.fromkeys(values))


def _addresses(value: object, what: str, version: Optional[int] = None) -> list[str]:
    """IP addresses in canonical text form (IPv6 compressed), in order, once each."""
    out = []
    for item in _items(value, what):
        try:
            address = ipaddress.ip_address(str(item).strip())
        except ValueError:
            address = None
        if address is None or (version and address.version != version):
            kind = {4: 'an IPv4 address', 6: 'an IPv6 address'}.get(version, 'an IP address')
            raise ValueError('%s: %r is not %s' % (what, item, kind))
        out.append(str(address))
    return _unique(out)


def _mailto(value: object, what: str) -> str:
    """'mailto:local@domain' from an address, with or without 'mailto:'."""
    text = value.strip() if isinstance(value, str) else ''
    if text.lower().startswith('mailto:'):
        text = text[7:]
    local, at, domain = text.rpartition('@')
    if not at or not _LOCAL_PART.match(local):
        raise ValueError('%s: %r is not a mail address (such as dmarc-reports@example.com)' % (what, value))
    return 'mailto:%s@%s' % (local, host_name(domain, what))


def _report_uris(value: object, what: str, https: bool = False) -> list[str]:
    """Report URIs (DMARC rua, TLS-RPT rua): addresses as mailto: URIs, and
    https:// URIs when the record allows them."""
    out = []
    for item in _items(value, what):
        if https and isinstance(item, str) and item.strip().lower().startswith('https://'):
            if not _HTTPS_URI.match(item.strip()):
                raise ValueError('%s: %r is not an https:// URI without spaces, commas or semicolons' % (what, item))
            out.append(item.strip())
        else:
            out.append(_mailto(item, what))
    return _unique(out)


def _within(name: str, domain: str) -> bool:
    """True when name is domain or a name under it."""
    return name == domain or name.endswith('.' + domain)


def _fqdn(name: str) -> str:
    return name + '.'


def _txt(value: str) -> str:
    """A TXT value as a zone file writes it: quoted strings of at most 255
    bytes each (RFC 1035, 3.3.14), '"' and '\\' escaped, bytes outside
    printable ASCII as \\DDD."""
    data = value.encode('utf-8')
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b'']
    return ' '.join('"%s"' % ''.join(_escape_byte(byte) for byte in chunk) for chunk in chunks)


def _escape_byte(byte: int) -> str:
    if byte in (0x22, 0x5C):
        return '\\' + chr(byte)
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    return '\\%03d' % byte


def _selector(value: object, what: str = 'DKIM selector') -> str:
    """A DKIM selector (RFC 6376, 3.1): labels of a host name, one or more."""
    text = value.strip().lower() if isinstance(value, str) else ''
    if not text or not all(_LABEL.match(label) for label in text.split('.')):
        raise ValueError('%s: %r is not a DKIM selector (labels of letters, digits and inner hyphens, such as mail)'
                         % (what, value))
    return text


def _dkim_pairs(dkim: object) -> list[tuple[str, str]]:
    """(selector, record value) pairs from pairs or {selector, value} dicts."""
    out: dict[str, str] = {}
    for item in _items(dkim, 'dkim'):
        if isinstance(item, Mapping):
            selector, value = item.get('selector'), item.get('value', item.get('record'))
        elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) == 2:
            selector, value = item
        else:
            raise ValueError('dkim: %r is not a (selector, record) pair nor a {selector, value} mapping' % (item,))
        selector = _selector(selector, 'dkim selector')
        if not isinstance(value, str) or not _DKIM_KEY_TAG.search(value):
            raise ValueError('dkim: the record of selector %s, %r, is not a DKIM key record (v=DKIM1; k=rsa; p=...)'
                             % (selector, value))
        if selector in out:
            raise ValueError('dkim: selector %s is given twice' % selector)
        out[selector] = value.strip()
    return list(out.items())


# --------------------------------------------------------------------------- MTA-STS

def mta_sts_policy(mx_hosts: Union[str, Iterable[str]], mode: str = 'enforce',
                   max_age: Union[int, str] = 604800) -> str:
    """The MTA-STS policy text (RFC 8461, 3.2) served at
    https://mta-sts.<domain>/.well-known/mta-sts.txt.

    mx_hosts: the MX host names, or patterns such as '*.example.net' (one
    text or a list); at least one unless mode is 'none'.
    mode: 'enforce', 'testing' or 'none'.
    max_age: how long senders cache the policy, in seconds (0 to 31557600).
    Lines end with CRLF, as the RFC writes them. Raises ValueError.
    """
    if mode not in STS_MODES:
        raise ValueError('MTA-STS mode: %r is not one of %s' % (mode, ', '.join(STS_MODES)))
    max_age = _integer(max_age, 'MTA-STS max_age', 0, STS_MAX_AGE)
    hosts = _unique(host_name(host, 'MTA-STS mx', wildcard=True) for host in _items(mx_hosts, 'MTA-STS mx'))
    if not hosts and mode != 'none':
        raise ValueError('MTA-STS mx: a policy in mode %s needs at least one MX host' % mode)
    lines = ['version: STSv1', 'mode: ' + mode] + ['mx: ' + host for host in hosts] + ['max_age: %d' % max_age]
    return '\r\n'.join(lines) + '\r\n'


def mta_sts_id(policy: str) -> str:
    """The id of the _mta-sts TXT record for a policy text: the first 20 hex
    digits of the SHA-256 of the policy with CRLF line ends (RFC 8461, 3.1:
    1 to 32 letters and digits). It changes whenever the policy changes, so
    senders fetch the new one; the same policy always gives the same id."""
    if not isinstance(policy, str) or not policy.lstrip().startswith('version: STSv1'):
        raise ValueError('MTA-STS id: the input is not an MTA-STS policy (it must start with "version: STSv1"): %r'
                         % (policy if not isinstance(policy, str) else policy[:60],))
    text = policy.replace('\r\n', '\n').replace('\n', '\r\n')
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:20]


# --------------------------------------------------------------------------- TLSA

def tlsa_311(pem: Union[str, bytes]) -> str:
    """The data of a TLSA '3 1 1' record (DANE-EE, SubjectPublicKeyInfo,
    SHA-256; RFC 6698, RFC 7671): the SHA-256, in lower-case hex, of the DER
    SubjectPublicKeyInfo of the public key in pem.

    pem: the first PEM block of the text is read: a CERTIFICATE (in a chain
    file, the server's own certificate comes first), a PUBLIC KEY or an
    unencrypted PRIVATE KEY (PKCS#8, RSA or EC). The digest depends on the
    key alone, so it stays when the certificate is renewed on the same key.
    Raises ValueError.
    """
    if x509 is None:
        raise ValueError('tlsa_311 needs the Python package cryptography on the controller '
                         '(pip install -r requirements.txt)')
    data = pem.encode('utf-8') if isinstance(pem, str) else pem
    if not isinstance(data, bytes):
        raise ValueError('tlsa_311: %r is not a PEM text' % (pem,))
    begin = re.search(rb'-----BEGIN ([A-Z0-9 ]+)-----', data)
    if not begin:
        raise ValueError('tlsa_311 needs a PEM certificate or key (-----BEGIN CERTIFICATE----- ...); '
                         'the input has no PEM block')
    label = begin.group(1).decode('ascii')
    end = data.find(b'-----END %s-----' % begin.group(1), begin.end())
    if end < 0:
        raise ValueError('tlsa_311: the PEM %s block has no END line' % label)
    block = data[begin.start():end + len(label) + 14]
    try:
        if label == 'CERTIFICATE':
            key = x509.load_pem_x509_certificate(block).public_key()
        elif label in ('PUBLIC KEY', 'RSA PUBLIC KEY'):
            key = serialization.load_pem_public_key(block)
        elif label.endswith('PRIVATE KEY') and label != 'ENCRYPTED PRIVATE KEY':
            key = serialization.load_pem_private_key(block, password=None).public_key()
        else:
            raise ValueError('tlsa_311: a PEM %s cannot be used: give a CERTIFICATE, a PUBLIC KEY or an unencrypted '
                             'PRIVATE KEY' % label)
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if str(exc).startswith('tlsa_311:'):
            raise
        raise ValueError('tlsa_311: the PEM %s cannot be read: %s' % (label, exc)) from None
    return hashlib.sha256(spki).hexdigest()


def _tlsa_digests(value: object) -> list[str]:
    out = []
    for item in _items(value, 'tlsa'):
        digest = item.strip().lower() if isinstance(item, str) else ''
        if not _HEX_SHA256.match(digest):
            raise ValueError('tlsa: %r is not a SHA-256 digest in hex (64 hex digits; see tlsa_311)' % (item,))
        out.append(digest)
    return _unique(out)


# --------------------------------------------------------------------------- DKIM key files

def _logical_lines(text: str) -> list[list[tuple[bool, str]]]:
    """Zone-file text as logical lines of (quoted, token): comments dropped,
    lines inside parentheses joined, quoted strings unescaped."""
    lines: list[list[tuple[bool, str]]] = []
    tokens: list[tuple[bool, str]] = []
    depth, i, n = 0, 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            raw, i = bytearray(), i + 1
            while i < n and text[i] != '"':
                if text[i] == '\\' and re.match(r'[0-9]{3}', text[i + 1:i + 4]):
                    raw.append(int(text[i + 1:i + 4]) & 0xFF)
                    i += 4
                    continue
                if text[i] == '\\' and i + 1 < n:
                    i += 1
                raw.extend(text[i].encode('utf-8'))
                i += 1
            if i >= n:
                raise ValueError('DKIM record: a quoted string is not closed: %r' % text[:80])
            tokens.append((True, raw.decode('utf-8', 'replace')))
            i += 1
        elif char == ';':
            while i < n and text[i] != '\n':
                i += 1
        elif char == '(':
            depth += 1
            i += 1
        elif char == ')':
            depth = max(depth - 1, 0)
            i += 1
        elif char == '\n':
            if depth == 0 and tokens:
                lines.append(tokens)
                tokens = []
            i += 1
        elif char.isspace():
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in '"();':
                i += 1
            tokens.append((False, text[start:i]))
    if tokens:
        lines.append(tokens)
    return lines


def dkim_records_from_txt(text: str, domain: Optional[str] = None) -> list[tuple[str, str]]:
    """(selector, record value) of every DKIM key record in zone-file text.

    text: what the rspamd container writes in <domain>.<selector>.txt, one
    line 'mail._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; " "p=..."'
    (several files' texts may be joined); the multi-line form of rspamadm
    dkim_keygen and opendkim-genkey ('mail._domainkey IN TXT ( "..." ... )')
    is read too. The quoted strings of a record are joined into its value.
    domain: when given, records of other domains are left out (a relative
    owner, 'mail._domainkey', counts as this domain's).
    An empty text gives []; a text with no DKIM record is a ValueError.
    """
    if not isinstance(text, str):
        raise ValueError('DKIM record: %r is not a text' % (text,))
    wanted = host_name(domain, 'domain') if domain is not None else None
    found, out = False, []
    for tokens in _logical_lines(text):
        words = [token.upper() for quoted, token in tokens if not quoted]
        if 'TXT' not in words or tokens[0][0]:
            continue
        owner = tokens[0][1].lower().rstrip('.')
        labels = owner.split('.')
        if '_domainkey' not in labels:
            continue
        at = labels.index('_domainkey')
        selector = _selector('.'.join(labels[:at]), 'DKIM record %s: selector' % tokens[0][1])
        owner_domain = '.'.join(labels[at + 1:])
        txt_at = next(i for i, (quoted, token) in enumerate(tokens) if not quoted and token.upper() == 'TXT')
        value = ''.join(token for quoted, token in tokens[txt_at + 1:] if quoted)
        if not _DKIM_KEY_TAG.search(value):
            raise ValueError('DKIM record %s: %r is not a DKIM key record (v=DKIM1; k=rsa; p=...)'
                             % (tokens[0][1], value[:80]))
        found = True
        if wanted and owner_domain and owner_domain != wanted:
            continue
        out.append((selector, value))
    if not found and text.strip():
        raise ValueError('DKIM record: no "<selector>._domainkey.<domain>. IN TXT ..." line in %r' % text[:80])
    return out


# --------------------------------------------------------------------------- zone

class _Zone:
    """Lines of a zone file: records (owner, type, data) and comments."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, ...]] = []

    def comment(self, *texts: str) -> None:
        self.lines.extend(('comment', text) for text in texts)

    def blank(self) -> None:
        if self.lines and self.lines[-1] != ('blank',):
            self.lines.append(('blank',))

    def record(self, owner: str, rtype: str, data: str) -> None:
        self.lines.append(('record', owner, rtype, data))

    def render(self, head: Sequence[str]) -> str:
        width = max([len(line[1]) for line in self.lines if line[0] == 'record'] + [0])
        out = list(head)
        for line in self.lines:
            if line[0] == 'comment':
                out.append('; ' + line[1] if line[1] else ';')
            elif line[0] == 'blank':
                out.append('')
            else:
                out.append('%-*s IN %-5s %s' % (width, line[1], line[2], line[3]))
        while out and out[-1] == '':
            out.pop()
        return '\n'.join(out) + '\n'


def _soa_mailbox(value: object) -> str:
    """The SOA RNAME of an address: hostmaster@example.com -> hostmaster.example.com
    (a dot in the local part escaped)."""
    text = value.strip() if isinstance(value, str) else ''
    local, at, domain = text.rpartition('@')
    if not at or not _LOCAL_PART.match(local):
        raise ValueError('soa_email: %r is not a mail address (such as hostmaster@example.com)' % (value,))
    return '%s.%s' % (local.replace('.', '\\.'), host_name(domain, 'soa_email'))


def _client_ports(value: object) -> dict[str, int]:
    """mailserver_client_ports as {service: port}; a service left out or 0 is not offered."""
    if value is None:
        value = DEFAULT_CLIENT_PORTS
    if not isinstance(value, Mapping):
        raise ValueError('client_ports: %r is not a mapping such as {imaps: 993, submissions: 465}' % (value,))
    known = [service for service, _label, _priority in SRV_SERVICES]
    out = {}
    for service, port in value.items():
        if service not in known:
            raise ValueError('client_ports: %r is not one of %s' % (service, ', '.join(known)))
        out[service] = _integer(port, 'client_ports.%s' % service, 0, 65535)
    return out


def zone(domain: str, *, mail_host: str, ipv4: Union[str, Iterable[str]] = (), ipv6: Union[str, Iterable[str]] = (),
         mx_hosts: Union[str, Iterable[str], None] = None, mx_priority: Union[int, str] = 10, dkim: Pairs = (),
         dmarc_policy: str = 'quarantine', dmarc_rua: Union[str, Iterable[str], None] = None,
         tls_rpt_rua: Union[str, Iterable[str], None] = None, mta_sts: Optional[str] = None,
         client_ports: Optional[Mapping[str, Union[int, str]]] = None, autoconfig: bool = True,
         web_host: Optional[str] = None, web_port: Union[int, str] = 443, tlsa: Union[str, Iterable[str]] = (),
         tlsa_ports: Union[int, Iterable[Union[int, str]]] = (25,),
         hosts: Optional[Mapping[str, Union[str, Iterable[str]]]] = None,
         nameservers: Union[str, Iterable[str], None] = None, soa_email: Optional[str] = None,
         serial: Union[int, str] = 1, ttl: Union[int, str] = 3600) -> str:
    """The zone file text of the mail records of domain.

    domain: the hosted domain (the zone's origin).
    mail_host: the host name of the mail server: the MX (unless mx_hosts),
      the SRV target, the name TLSA records are for. Inside the domain, its
      A/AAAA records (ipv4, ipv6) are in the zone; outside it, they are
      published in its own zone, and a comment says so.
    ipv4, ipv6: the mail host's public addresses.
    mx_hosts: the MX host names, priorities mx_priority, +10, +20... in order
      (default: mail_host alone).
    dkim: (selector, record value) pairs, or {selector, value} mappings (what
      dkim_records_from_txt gives); each value split into strings of 255.
    dmarc_policy: none, quarantine or reject; dmarc_rua: where aggregate
      reports go (addresses), or None for no rua tag.
    tls_rpt_rua: where SMTP TLS reports go (addresses or https:// URIs), or
      None for no _smtp._tls record.
    mta_sts: the policy id (mta_sts_id of the policy), or None for no
      MTA-STS records; with one, mta-sts.<domain> is a CNAME of web_host.
    client_ports: mailserver_client_ports ({imaps, imap, submissions,
      submission, managesieve, pop3s, pop3: port}); a service left out or 0
      gets 'SRV 0 0 0 .', "not offered" (RFC 6186, 3.4).
    autoconfig: autoconfig.<domain> and autodiscover.<domain> as CNAMEs of
      web_host and the _autodiscover._tcp SRV record to web_port.
    web_host: the host of the HTTPS entry (autoconfig, MTA-STS policy);
      default mail_host. web_port: its HTTPS port for autodiscover.
    tlsa: SHA-256 digests (tlsa_311) for 'TLSA 3 1 1' records of the mail
      host on each of tlsa_ports (default 25); give them only when the
      zone is signed with DNSSEC. Outside the domain: a comment.
    hosts: {host name: addresses} of other hosts inside the domain that the
      records name (a second MX, the web host, a name server); hosts
      outside the domain get a comment.
    nameservers: the zone's name servers (your DNS provider's); default a
      placeholder. soa_email: the SOA contact (default hostmaster@domain).
    serial, ttl: the SOA serial and the zone's $TTL.
    None or an empty text is the same as an option left out.
    Every host inside the domain that a record points to must have an
    address in the zone. Raises ValueError naming the parameter and value.
    """
    domain = host_name(domain, 'domain')
    mail_host = host_name(mail_host, 'mail_host')
    # None or '' is "not given" for every option (what a template can pass).
    web_host = host_name(web_host, 'web_host') if web_host else mail_host
    ipv4_list = _addresses(ipv4, 'ipv4', 4)
    ipv6_list = _addresses(ipv6, 'ipv6', 6)
    mx_list = _unique(host_name(h, 'mx_hosts') for h in _items(mx_hosts, 'mx_hosts')) or [mail_host]
    mx_first = _integer(mx_priority, 'mx_priority', 0, 65535 - 10 * (len(mx_list) - 1))
    dkim_list = _dkim_pairs(dkim)
    if dmarc_policy not in DMARC_POLICIES:
        raise ValueError('dmarc_policy: %r is not one of %s' % (dmarc_policy, ', '.join(DMARC_POLICIES)))
    dmarc_uris = _report_uris(dmarc_rua, 'dmarc_rua')
    tls_rpt_uris = _report_uris(tls_rpt_rua, 'tls_rpt_rua', https=True)
    mta_sts = mta_sts or None
    if mta_sts is not None and not (isinstance(mta_sts, str) and _STS_ID.match(mta_sts)):
        raise ValueError('mta_sts: %r is not an MTA-STS policy id (1 to 32 letters and digits; see mta_sts_id)'
                         % (mta_sts,))
    ports = _client_ports(client_ports if client_ports != '' else None)
    if not isinstance(autoconfig, bool):
        raise ValueError('autoconfig: %r is not true or false' % (autoconfig,))
    web_port = _integer(web_port, 'web_port', 1, 65535)
    digests = _tlsa_digests(tlsa)
    tlsa_port_list = _unique(_integer(p, 'tlsa_ports', 1, 65535) for p in _items(
        [tlsa_ports] if isinstance(tlsa_ports, int) else tlsa_ports, 'tlsa_ports'))
    hosts = hosts or None
    if not isinstance(hosts, (Mapping, type(None))):
        raise ValueError('hosts: %r is not a mapping of host names to addresses' % (hosts,))
    other_hosts = {host_name(name, 'hosts'): _addresses(addresses, 'hosts.%s' % name)
                   for name, addresses in (hosts or {}).items()}
    if mail_host in other_hosts:
        raise ValueError('hosts: %s is the mail host: give its addresses as ipv4 and ipv6' % mail_host)
    ns_list = _unique(host_name(h, 'nameservers') for h in _items(nameservers, 'nameservers'))
    placeholder_ns = not ns_list
    ns_list = ns_list or [PLACEHOLDER_NAMESERVER]
    rname = _soa_mailbox(soa_email or 'hostmaster@' + domain)
    serial = _integer(serial, 'serial', 0, 4294967295)
    ttl = _integer(ttl, 'ttl', 0, 2147483647)

    # Which hosts inside the zone have addresses here, and which names are aliases.
    addressed = {name for name, addresses in other_hosts.items() if addresses and _within(name, domain)}
    mail_in_zone = _within(mail_host, domain)
    if mail_in_zone and (ipv4_list or ipv6_list):
        addressed.add(mail_host)
    aliases = {}
    if mta_sts:
        aliases['mta-sts.' + domain] = web_host
    if autoconfig:
        aliases['autoconfig.' + domain] = web_host
        aliases['autodiscover.' + domain] = web_host
    used = [('mail_host', mail_host)] + [('mx_hosts', h) for h in mx_list] + [('nameservers', h) for h in ns_list]
    if aliases:
        used.append(('web_host', web_host))
    used += [('hosts', h) for h in other_hosts]
    for what, name in used:
        if name in aliases:
            raise ValueError('%s: %s is also the alias (CNAME) the zone publishes for %s; choose another name'
                             % (what, name, 'MTA-STS' if name.startswith('mta-sts.') else 'autoconfiguration'))
    for what, name in used:
        if _within(name, domain) and name not in addressed:
            how = 'ipv4/ipv6' if name == mail_host else 'hosts={%s: [addresses]}' % name
            raise ValueError('%s: %s is inside %s but the zone has no address for it: give %s'
                             % (what, name, domain, how))

    z = _Zone()
    apex = _fqdn(domain)
    if placeholder_ns:
        z.comment('Placeholders: no name server was given; put your DNS provider\'s SOA and NS here.')
    z.comment('SOA timers: refresh, retry, expire, negative-answer TTL.')
    z.record(apex, 'SOA', '%s %s %d %d %d %d %d' % ((_fqdn(ns_list[0]), _fqdn(rname), serial) + SOA_TIMERS))
    for name in ns_list:
        z.record(apex, 'NS', _fqdn(name))
    z.blank()

    z.comment('Mail for %s goes to its MX; SPF: only the MX hosts send it.' % domain)
    for i, name in enumerate(mx_list):
        z.record(apex, 'MX', '%d %s' % (mx_first + 10 * i, _fqdn(name)))
    z.record(apex, 'TXT', _txt('v=spf1 mx -all'))
    z.blank()

    if mail_in_zone:
        z.comment('The mail host; its SPF record covers the name it greets with (HELO).')
        for address in ipv4_list:
            z.record(_fqdn(mail_host), 'A', address)
        for address in ipv6_list:
            z.record(_fqdn(mail_host), 'AAAA', address)
        if mail_host != domain:
            z.record(_fqdn(mail_host), 'TXT', _txt('v=spf1 a -all'))
    else:
        known = ', '.join(['A %s' % a for a in ipv4_list] + ['AAAA %s' % a for a in ipv6_list])
        z.comment('The mail host %s is outside %s: its A/AAAA records%s are published in its own zone.'
                  % (mail_host, domain, ' (%s)' % known if known else ''))
    inside = [name for name in other_hosts if _within(name, domain)]
    outside = [name for name in other_hosts if not _within(name, domain)]
    if inside:
        z.blank()
        z.comment('Other hosts the records name.')
        for name in inside:
            for address in other_hosts[name]:
                z.record(_fqdn(name), 'AAAA' if ':' in address else 'A', address)
    for name in outside:
        z.comment('%s is outside %s: its addresses are published in its own zone.' % (name, domain))
    z.blank()

    if dkim_list:
        z.comment('DKIM public keys, one per selector (RFC 6376).')
        for selector, value in dkim_list:
            z.record('%s._domainkey.%s' % (selector, apex), 'TXT', _txt(value))
        z.blank()

    z.comment('DMARC (RFC 7489): what receivers do with mail that fails SPF and DKIM alignment.')
    dmarc = 'v=DMARC1; p=%s' % dmarc_policy
    if dmarc_uris:
        dmarc += '; rua=' + ','.join(dmarc_uris)
    z.record('_dmarc.' + apex, 'TXT', _txt(dmarc))
    for uri in dmarc_uris:
        target = uri.rpartition('@')[2]
        if not _within(target, domain):
            z.comment('%s takes reports for %s only with %s._report._dmarc.%s. IN TXT "v=DMARC1" in its zone '
                      '(RFC 7489, 7.1).' % (target, domain, domain, target))
    z.blank()

    if mta_sts:
        z.comment('MTA-STS (RFC 8461): the policy is served at https://mta-sts.%s/.well-known/mta-sts.txt '
                  '(a certificate naming mta-sts.%s);' % (domain, domain),
                  'the id changes with the policy.')
        z.record('_mta-sts.' + apex, 'TXT', _txt('v=STSv1; id=%s' % mta_sts))
        z.record('mta-sts.' + apex, 'CNAME', _fqdn(web_host))
        z.blank()
    if tls_rpt_uris:
        z.comment('SMTP TLS reporting (RFC 8460): where senders report TLS failures.')
        z.record('_smtp._tls.' + apex, 'TXT', _txt('v=TLSRPTv1; rua=%s' % ','.join(tls_rpt_uris)))
        z.blank()

    z.comment('What mail programs look up (RFC 6186, RFC 8314; ManageSieve: RFC 5804); "0 0 0 ." is "not offered".')
    for service, label, priority in SRV_SERVICES:
        port = ports.get(service, 0)
        z.record('%s.%s' % (label, apex), 'SRV', '%d 1 %d %s' % (priority, port, _fqdn(mail_host)) if port
                 else '0 0 0 .')
    z.blank()

    if autoconfig:
        z.comment('Autoconfiguration: Thunderbird (autoconfig), Outlook (autodiscover) at the HTTPS entry.')
        z.record('autoconfig.' + apex, 'CNAME', _fqdn(web_host))
        z.record('autodiscover.' + apex, 'CNAME', _fqdn(web_host))
        z.record('_autodiscover._tcp.' + apex, 'SRV', '0 1 %d %s' % (web_port, _fqdn(web_host)))
        z.blank()

    if digests:
        if mail_in_zone:
            z.comment('DANE (RFC 7672): TLSA 3 1 1 of the mail host\'s key; publish only in a DNSSEC-signed zone.')
            for port in tlsa_port_list:
                for digest in digests:
                    z.record('_%d._tcp.%s' % (port, _fqdn(mail_host)), 'TLSA', '3 1 1 %s' % digest)
        else:
            z.comment('The TLSA records of %s (DANE) are published in its own zone, signed with DNSSEC.' % mail_host)

    head = ['; The DNS records of the mail domain %s (maillab.mailserver). Names are absolute.' % domain,
            '; SOA and NS: your DNS provider\'s; the rest are the mail records to publish.',
            '; Check: named-checkzone %s <this file>' % domain,
            '$ORIGIN %s' % apex, '$TTL %d' % ttl, '']
    return z.render(head)
