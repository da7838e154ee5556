# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the exposure checks: which bind addresses face more than the
host itself, which relay networks reach beyond loopback, and which secrets
are still the lab's."""

from __future__ import annotations

import hashlib
import ipaddress

from ansible.errors import AnsibleFilterError


def _address(value):
    text = str(value).strip()
    if text.startswith('[') and text.endswith(']'):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise AnsibleFilterError('%r is not an IPv4 or IPv6 address (a bind address must be one: '
                                 '127.0.0.1, 192.0.2.10, 2001:db8::10, 0.0.0.0 or ::)' % (value,))


def non_loopback(addresses):
    """The bind addresses that other hosts can reach: every address outside
    127.0.0.0/8 and ::1, including the wildcards 0.0.0.0 and ::. Empty entries
    (a surface left unpublished) are skipped; anything that is not an IP
    address is an error that names it."""
    if isinstance(addresses, str):
        addresses = [addresses]
    return [str(value) for value in addresses if str(value).strip() and not _address(value).is_loopback]


def _network(entry):
    """A Postfix mynetworks entry as a network, or None when it is not one
    (a host name, a /file/name or a type:table lookup)."""
    text = str(entry).strip()
    if text.startswith('['):
        host, sep, rest = text[1:].partition(']')
        if not sep or (rest and not rest.startswith('/')):
            return None
        text = host + rest
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


_LOOPBACK = (ipaddress.ip_network('127.0.0.0/8'), ipaddress.ip_network('::1/128'))


def networks_beyond_loopback(networks):
    """The mynetworks entries that trust more than the container's own
    loopback: networks reaching outside 127.0.0.0/8 and ::1, and every entry
    that is not a network at all (Postfix would read a name, a file or a
    table there, which cannot be checked), in their original spelling."""
    if isinstance(networks, str):
        networks = networks.replace(',', ' ').split()
    beyond = []
    for entry in networks:
        net = _network(entry)
        if net is None or not any(net.version == lo.version and net.subnet_of(lo) for lo in _LOOPBACK):
            beyond.append(str(entry))
    return beyond


def invalid_networks(networks):
    """The entries that are not an IPv4 or IPv6 network (or address)."""
    if isinstance(networks, str):
        networks = networks.replace(',', ' ').split()
    return [str(entry) for entry in networks or () if _network(entry) is None]


def sha256_hex(value):
    """SHA-256 of a string, hex: how the lab's passwords are listed without
    being written out once more."""
    return hashlib.sha256(str(value).encode('utf-8')).hexdigest()


def lab_secrets(named, lab_hashes):
    """The names of the secrets whose value is one of the lab's.

    named: {variable name: value}; a value may also be a list of
    {address, password} items (mailserver_users), reported as
    name[address].
    lab_hashes: SHA-256 hex digests of the lab's passwords.
    """
    lab = set(lab_hashes)
    found = []
    for name, value in named.items():
        if isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, dict) and item.get('password') and sha256_hex(item['password']) in lab:
                    found.append('%s[%s]' % (name, item.get('address', '?')))
        elif value and sha256_hex(value) in lab:
            found.append(name)
    return found


def published(ports, default_bind):
    """The port entries ({port, container_port, variable, bind?}) that are
    published, each with its bind address: the entry's own bind when it has
    one (\"\" leaves the port unpublished), else default_bind."""
    chosen = []
    for entry in ports or ():
        bind = entry.get('bind', default_bind) if isinstance(entry, dict) else default_bind
        bind = '' if bind is None else str(bind).strip()
        if bind:
            _address(bind)
            chosen.append(dict(entry, bind=bind))
    return chosen


def published_ports(ports, default_bind):
    """Docker's published_ports strings (bind:host_port:container_port, an
    IPv6 bind in brackets) for the entries that are published."""
    out = []
    for entry in published(ports, default_bind):
        bind = entry['bind']
        if ':' in bind and not bind.startswith('['):
            bind = '[%s]' % bind
        out.append('%s:%d:%d' % (bind, int(entry['port']), int(entry['container_port'])))
    return out


class FilterModule(object):
    def filters(self):
        return {
            'non_loopback': non_loopback,
            'networks_beyond_loopback': networks_beyond_loopback,
            'invalid_networks': invalid_networks,
            'lab_secrets': lab_secrets,
            'published': published,
            'published_ports': published_ports,
        }
