"""The exposure checks' filters: public binds, relay networks, lab secrets,
published ports; and the regexes the inputs are validated with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.maillab.mailserver.plugins.filter import exposure

ROOT = Path(__file__).resolve().parents[4]


def test_loopback_binds_are_not_public_and_everything_else_is():
    assert exposure.non_loopback(['127.0.0.1', '127.0.0.2', '::1', '']) == []
    assert exposure.non_loopback(['0.0.0.0', '::', '192.0.2.10', '[2001:db8::1]', '127.0.0.1']) == \
        ['0.0.0.0', '::', '192.0.2.10', '[2001:db8::1]']
    assert exposure.non_loopback('10.1.2.3') == ['10.1.2.3']


def test_a_bind_that_is_no_address_is_an_error_naming_it():
    with pytest.raises(AnsibleFilterError, match="'mail.example.com' is not an IPv4 or IPv6 address"):
        exposure.non_loopback(['mail.example.com'])


@pytest.mark.parametrize('networks', [
    ['127.0.0.0/8', '[::1]/128'], ['127.0.0.1'], ['127.0.0.0/16'], ['[::1]'], '127.0.0.0/8, [::1]/128'])
def test_loopback_networks_stay_inside(networks):
    assert exposure.networks_beyond_loopback(networks) == []


@pytest.mark.parametrize('entry', [
    '172.17.0.0/16',        # Docker's default bridge: the classic gateway open relay
    '172.17.0.1',           # the gateway itself
    '127.0.0.0/7',          # a supernet of loopback
    '0.0.0.0/0', '[::]/0', '[::ffff:127.0.0.1]/128',
    '10.0.0.0/8', 'mail.example.com', '/etc/postfix/network_table', 'hash:/etc/postfix/nets',
    '[::1', '127.0.0.1/33'])
def test_anything_beyond_loopback_is_reported_as_written(entry):
    assert exposure.networks_beyond_loopback(['127.0.0.0/8', entry]) == [entry]


def test_lab_secrets_are_named_never_shown():
    lab = [exposure.sha256_hex('lab-admin-password'), exposure.sha256_hex('password')]
    found = exposure.lab_secrets({
        'mariadb_admin_password': 'lab-admin-password',
        'rspamd_enable_password': 'a-real-secret-1',
        'unset_password': '',
        'mailserver_users': [{'address': 'user1@example.com', 'password': 'password'},
                             {'address': 'boss@example.com', 'password': 'Str0ng-and-own'},
                             {'address': 'hashed@example.com', 'password_hash': '{BLF-CRYPT}$2y$...'}],
    }, lab)
    assert found == ['mariadb_admin_password', 'mailserver_users[user1@example.com]']


def _lab_passwords(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and key.endswith('password'):
                yield value
            else:
                yield from _lab_passwords(value)
    elif isinstance(node, list):
        for item in node:
            yield from _lab_passwords(item)


def test_the_lab_hash_list_is_exactly_the_lab_inventorys_passwords():
    inventory = yaml.safe_load((ROOT / 'inventories/lab/group_vars/all/main.yml').read_text())
    listed = yaml.safe_load((ROOT / 'roles/common/vars/main.yml').read_text())['__common_lab_secret_hashes']
    assert sorted(set(listed)) == sorted({exposure.sha256_hex(pw) for pw in _lab_passwords(inventory)})


def test_every_secret_of_the_lab_inventory_is_a_checked_variable():
    inventory = yaml.safe_load((ROOT / 'inventories/lab/group_vars/all/main.yml').read_text())
    checked = yaml.safe_load((ROOT / 'roles/common/vars/main.yml').read_text())['__common_secret_variables']
    top = {key for key, value in inventory.items() if isinstance(value, str) and key.endswith('password')}
    assert top <= set(checked)


def test_published_ports_use_each_entrys_bind_and_skip_unpublished_ones():
    ports = [{'port': 2525, 'container_port': 25, 'variable': 'a'},
             {'port': '8443', 'container_port': 443, 'variable': 'b', 'bind': '127.0.0.1'},
             {'port': 8080, 'container_port': 80, 'variable': 'c', 'bind': ''},
             {'port': 4190, 'container_port': 4190, 'variable': 'd', 'bind': '2001:db8::5'}]
    assert exposure.published_ports(ports, '192.0.2.7') == [
        '192.0.2.7:2525:25', '127.0.0.1:8443:443', '[2001:db8::5]:4190:4190']
    assert [p['variable'] for p in exposure.published(ports, '192.0.2.7')] == ['a', 'b', 'd']


@pytest.mark.parametrize('name', ['__common_domain_regex', '__common_address_regex'])
def test_validation_regexes_refuse_a_trailing_newline(name):
    regex = yaml.safe_load((ROOT / 'roles/common/vars/main.yml').read_text())[name]
    good = 'example.com' if 'domain' in name else 'user1@example.com'
    # Ansible's match test is re.match: only \Z keeps "good\n" out.
    assert re.match(regex, good)
    assert not re.match(regex, good + '\n')


def test_invalid_networks_names_what_is_not_a_network():
    assert exposure.invalid_networks(['10.0.0.0/24', '[2001:db8::]/64', '192.0.2.1']) == []
    assert exposure.invalid_networks(['10.0.0.0/33', 'lb.example.com', '10.0.0.0/24']) == ['10.0.0.0/33', 'lb.example.com']
