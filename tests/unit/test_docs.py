"""The README's variable tables match the roles' argument specs and defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_readme_variables_match_argument_specs():
    run = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'role_docs.py'), '--check'],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


ROLES = ['common', 'postfix', 'dovecot', 'mariadb', 'postfixadmin', 'webmail', 'rspamd', 'backup']


def _role_doc(role):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'))
    run = subprocess.run([str(Path(sys.executable).with_name('ansible-doc')), '-t', 'role', '-j',
                          'maillab.mailserver.' + role], capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)['maillab.mailserver.' + role]['entry_points']['main']['options']


def test_ansible_doc_shows_the_roles_real_defaults_and_required_inputs():
    sys.path.insert(0, str(ROOT / 'scripts'))
    import role_docs
    for role in ROLES:
        options = _role_doc(role)
        defaults = yaml.safe_load((ROOT / 'roles' / role / 'defaults' / 'main.yml').read_text()) or {}
        for name, opt in options.items():
            if name in role_docs.REQUIRED:
                assert opt.get('required') is True, (role, name)
            elif name in defaults and not role_docs._secret(name, opt):
                assert opt.get('default') == defaults[name], (role, name, opt.get('default'))
    assert _role_doc('common')['mailserver_domain']['required'] is True
    assert _role_doc('postfix')['postfix_smtp_host_port']['default'] == 2525
    assert _role_doc('dovecot')['dovecot_database_host']['default'] == '{{ mailserver_db_host }}'


def test_the_makefile_levels_are_the_level_table():
    table = yaml.safe_load((ROOT / 'roles' / 'common' / 'defaults' / 'main.yml').read_text())['mailserver_levels']
    run = subprocess.run(['make', '-s', 'levels'], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == list(table)


def _plugin_names(kind):
    return sorted(p.stem for p in (ROOT / 'plugins' / kind).glob('*.py') if not p.name.startswith('_'))


def test_ansible_doc_renders_every_module_and_lookup():
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'))
    for kind, folder in (('module', 'modules'), ('lookup', 'lookup')):
        names = ['maillab.mailserver.' + name for name in _plugin_names(folder)]
        assert names, folder
        run = subprocess.run([str(Path(sys.executable).with_name('ansible-doc')), '-t', kind, '-j', *names],
                             capture_output=True, text=True, env=env, cwd=ROOT)
        assert run.returncode == 0 and 'WARNING' not in run.stderr, run.stderr
        docs = json.loads(run.stdout)
        for name in names:
            assert docs[name]['doc']['short_description'], name
            assert docs[name]['doc'].get('options'), name
            if kind == 'module':
                assert docs[name]['return'], name
