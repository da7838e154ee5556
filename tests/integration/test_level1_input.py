"""Level 1: the base image needs no registry, and bad input fails early with
a message naming the cause, leaving no half-made container behind."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.foundation

ROOT = Path(__file__).resolve().parents[2]
BAD_PREFIX = 'mtbad-'


def playbook(*extra, env=None, inventory=None):
    cmd = ['ansible-playbook', 'playbooks/level1.yml', '-e', 'mailserver_name_prefix=' + BAD_PREFIX]
    if inventory:
        cmd[1:1] = ['-i', str(inventory)]
    cmd += list(extra)
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, 'ANSIBLE_CONFIG': str(ROOT / 'ansible.cfg'), **(env or {})})
    return run.returncode, run.stdout + run.stderr


@pytest.fixture
def no_leftovers(stack):
    yield
    names = stack.docker('ps', '-a', '--format', '{{.Names}}').stdout.split()
    left = [n for n in names if n.startswith(BAD_PREFIX)]
    for name in left:
        stack.docker('rm', '-f', name, check=False)
    stack.docker('network', 'rm', BAD_PREFIX + 'mailnet', check=False)
    for volume in stack.docker('volume', 'ls', '-q', '--filter', 'label=org.maillab.stack=' + BAD_PREFIX).stdout.split():
        stack.docker('volume', 'rm', volume, check=False)
    assert not left, 'half-made containers were left behind: %s' % left


def test_base_image_was_built_without_a_registry(stack):
    image = stack.docker('inspect', '-f', '{{.Config.Image}}', stack.smtp).stdout.strip()
    history = stack.docker('history', '--no-trunc', '--format', '{{.CreatedBy}}', 'debian:stable-slim').stdout
    labels = stack.docker('inspect', '-f', '{{json .Config.Labels}}', 'debian:stable-slim').stdout
    assert 'org.maillab.base.suite' in labels, 'debian:stable-slim is not the debootstrapped base: ' + labels
    assert 'ADD rootfs.tar' in history or 'ADD file:' in history
    size = int(stack.docker('image', 'inspect', '-f', '{{.Size}}', 'debian:stable-slim').stdout)
    assert size < 80_000_000, 'base image is %d bytes' % size
    os_release = stack.docker('run', '--rm', '--entrypoint', 'cat', image, '/etc/os-release').stdout
    assert 'Debian' in os_release
    assert stack.docker('run', '--rm', '--entrypoint', 'sh', image, '-c',
                        'ls /var/cache/apt/*.bin 2>/dev/null | wc -l').stdout.strip() == '0', 'apt caches in the image'


def test_missing_domain_is_named(tmp_path, no_leftovers):
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text('all:\n  children:\n    mailservers:\n      hosts:\n        localhost:\n'
                         '          ansible_connection: local\n'
                         '          ansible_python_interpreter: "{{ ansible_playbook_python }}"\n')
    rc, out = playbook(inventory=inventory)
    assert rc != 0
    # The common role's argument spec requires it: the play stops at the
    # role's first task, naming the variable.
    text = ' '.join(re.sub(r'\x1b\[[0-9;]*m', '', out).split())
    assert 'missing required arguments: mailserver_domain' in text, out[-2000:]


@pytest.mark.parametrize('domain', ['Not A Domain!', 'example', 'exa mple.com'])
def test_malformed_domain_is_named(domain, no_leftovers):
    rc, out = playbook('-e', 'mailserver_domain="%s"' % domain)
    assert rc != 0
    assert 'mailserver_domain must be set to the primary mail domain' in out, out[-2000:]


def test_malformed_user_address_is_named(no_leftovers):
    rc, out = playbook('-e', '{"mailserver_users": [{"address": "not-an-address", "password": "x"}]}')
    assert rc != 0
    assert 'mailserver_users entry not-an-address is invalid' in out, out[-2000:]
    assert '"x"' not in out.split('mailserver_users entry')[1][:400]


def test_taken_host_port_is_named(no_leftovers):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        rc, out = playbook('-e', 'postfix_smtp_host_port=%d' % port)
    assert rc != 0
    assert 'is already in use' in out and 'postfix_smtp_host_port' in out, out[-2000:]


def test_unreachable_docker_daemon_is_named(tmp_path, no_leftovers):
    rc, out = playbook(env={'DOCKER_HOST': 'unix://%s/nothing.sock' % tmp_path})
    assert rc != 0
    assert 'The Docker daemon does not answer' in out, out[-2000:]


def test_unreachable_mirror_is_named(stack, no_leftovers):
    rc, out = playbook('-e', 'mailserver_base_image=maillab-test/unreachable-base:1',
                       '-e', 'mailserver_base_image_source=bootstrap',
                       '-e', 'mailserver_apt_mirror=http://127.0.0.1:9/debian')
    stack.docker('rmi', 'maillab-test/unreachable-base:1', check=False)
    assert rc != 0
    assert 'debootstrap failed' in out and 'http://127.0.0.1:9/debian' in out and 'mailserver_apt_mirror' in out, out[-2000:]
