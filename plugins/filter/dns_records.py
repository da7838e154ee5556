# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the DNS records an operator publishes for a hosted domain: the
zone file, the MTA-STS policy and its id, TLSA digests, DKIM records."""

from __future__ import annotations

import inspect

from ansible.errors import AnsibleFilterError

from ansible_collections.maillab.mailserver.plugins.module_utils import _dns_zone


# The keyword options of dns_zone: every parameter of the zone function but the domain.
ZONE_OPTIONS = tuple(inspect.signature(_dns_zone.zone).parameters)[1:]


def dns_zone(domain, **options):
    """The zone file text of domain's mail records (see _dns_zone.zone)."""
    unknown = sorted(set(options) - set(ZONE_OPTIONS))
    if unknown:
        raise AnsibleFilterError('dns_zone: unknown option %s; the options are %s'
                                 % (', '.join(unknown), ', '.join(ZONE_OPTIONS)))
    if 'mail_host' not in options:
        raise AnsibleFilterError('dns_zone: mail_host (the host name of the mail server) is required')
    try:
        return _dns_zone.zone(domain, **options)
    except ValueError as exc:
        raise AnsibleFilterError('dns_zone: %s' % exc)


def mta_sts_policy(mx_hosts, mode='enforce', max_age=604800):
    """The MTA-STS policy text (RFC 8461) for the MX hosts."""
    try:
        return _dns_zone.mta_sts_policy(mx_hosts, mode=mode, max_age=max_age)
    except ValueError as exc:
        raise AnsibleFilterError('mta_sts_policy: %s' % exc)


def mta_sts_id(policy):
    """The _mta-sts TXT record's id for a policy text: it changes with the policy."""
    try:
        return _dns_zone.mta_sts_id(policy)
    except ValueError as exc:
        raise AnsibleFilterError('mta_sts_id: %s' % exc)


def tlsa_311(pem):
    """The SHA-256 (hex) of the SubjectPublicKeyInfo of a PEM certificate or key: TLSA 3 1 1 data."""
    try:
        return _dns_zone.tlsa_311(pem)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def dkim_records(text, domain=None):
    """[{'selector', 'value'}] of the DKIM key records in zone-file text (the rspamd role's .txt files)."""
    try:
        return [{'selector': selector, 'value': value}
                for selector, value in _dns_zone.dkim_records_from_txt(text, domain=domain)]
    except ValueError as exc:
        raise AnsibleFilterError('dkim_records: %s' % exc)


class FilterModule(object):
    def filters(self):
        return {
            'dns_zone': dns_zone,
            'mta_sts_policy': mta_sts_policy,
            'mta_sts_id': mta_sts_id,
            'tlsa_311': tlsa_311,
            'dkim_records': dkim_records,
        }
