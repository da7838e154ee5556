"""Rules between the roles fail the play before anything changes, with a
message that names the variables to change (no Docker needed: the checks
run before the play talks to the daemon)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _play(playbook, *extra):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_FORCE_COLOR='0')
    argv = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', str(ROOT / 'inventories' / 'lab'),
            str(ROOT / 'playbooks' / playbook), '-e', 'mailserver_name_prefix=unit-never-created-',
            '-e', 'mailserver_config_dir=/nonexistent/unit', *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_lmtp_concurrency_above_dovecots_per_user_limit_is_refused_naming_both():
    run = _play('level3.yml', '-e', 'postfix_lmtp_concurrency=12')
    out = ' '.join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert 'postfix_lmtp_concurrency (12) is above dovecot_lmtp_user_concurrency_limit (10)' in out, out[-2000:]
    assert 'TASK [maillab.mailserver.common : Check that the Docker daemon answers]' not in out


def test_dovecots_own_limit_counts_too():
    run = _play('level3.yml', '-e', 'dovecot_lmtp_user_concurrency_limit=3')
    out = ' '.join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert 'postfix_lmtp_concurrency (5) is above dovecot_lmtp_user_concurrency_limit (3)' in out, out[-2000:]


def test_a_dnssec_resolver_that_is_no_address_is_refused_naming_the_variable():
    run = _play('level1.yml', '-e', '{"postfix_dnssec_resolvers": ["resolver.example"]}')
    out = ' '.join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert 'postfix_dnssec_resolvers must be a list of resolver IP addresses' in out, out[-2000:]
