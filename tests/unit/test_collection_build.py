"""The built collection (ansible-galaxy collection build) holds no cache, no
local state, none of the lab harness and no lab password, even when the
working tree is full of them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAB_VARS = ROOT / 'inventories' / 'lab' / 'group_vars' / 'all' / 'main.yml'

# What a working tree collects: lint, test and Python caches, molecule's
# ephemeral state, the virtualenv, the collection symlink, results, a build.
JUNK = [
    '.ansible/collections/ansible_collections/maillab/mailserver/README.md',
    '.ansible/.lock',
    'roles/common/.ansible/roles/x.yml',
    '.pytest_cache/v/cache/lastfailed',
    'tests/unit/.pytest_cache/README.md',
    'plugins/filter/__pycache__/mailserver.cpython-311.pyc',
    'plugins/filter/stray.pyc',
    '.cache/pip/selfcheck.json',
    '.venv/bin/python',
    '.mypy_cache/3.11/x.json',
    'molecule/level1/.molecule/state.yml',
    'results/bench-level2.json',
    'maillab-mailserver-0.0.1.tar.gz',
]
# Paths that must not be in the artifact, as regular expressions on member names.
FORBIDDEN = [
    r'(^|/)\.ansible(/|$)', r'(^|/)\.pytest_cache(/|$)', r'(^|/)\.cache(/|$)', r'(^|/)\.mypy_cache(/|$)',
    r'(^|/)__pycache__(/|$)', r'\.pyc$', r'^\.venv(/|$)', r'^\.collections(/|$)', r'^\.git(/|$)',
    r'^molecule/[^/]+/\.molecule(/|$)', r'^results(/|$)', r'\.tar\.gz$',
    # The lab harness.
    r'^inventories/lab(/|$)', r'^molecule(/|$)', r'^\.config(/|$)', r'^tests(/|$)', r'^scripts(/|$)', r'^\.ci(/|$)',
    r'^Makefile$', r'^ansible\.cfg$',
]


def _ansible_galaxy():
    beside = Path(sys.executable).parent / 'ansible-galaxy'
    found = str(beside) if beside.exists() else shutil.which('ansible-galaxy')
    if not found:
        pytest.skip('ansible-galaxy is not installed')
    return found


def _tree(src, dst):
    """The working tree without what is heavy or private (.git, the venv,
    caches), then the junk above planted in it."""
    heavy = shutil.ignore_patterns('.git', '.venv', '.collections', '.ansible', '.cache', '.pytest_cache',
                                   '__pycache__', '.molecule', 'results', '*.tar.gz')
    shutil.copytree(src, dst, ignore=heavy, symlinks=True)
    for rel in JUNK:
        path = dst / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('junk\n')
    link = dst / '.collections' / 'ansible_collections' / 'maillab' / 'mailserver'
    link.parent.mkdir(parents=True)
    link.symlink_to('../../..')


def _secrets(node, key=''):
    """Every password of the lab inventory (the values of *password keys)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _secrets(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _secrets(v, key)
    elif isinstance(node, str) and key.endswith('password'):
        yield node


def _leaks(secret):
    """A matcher for one lab password. A distinctive one (lab-admin-password)
    is looked for anywhere; the users' lab password is the plain word
    "password", which every file about passwords contains, so it counts
    only as a value (`password: password`, `password = "password"`)."""
    if not secret.isalpha():
        return re.compile(re.escape(secret))
    return re.compile(r'(?m)[:=]\s*(["\']?)%s\1\s*(#.*)?$' % re.escape(secret))


@pytest.fixture(scope='module')
def artifact(tmp_path_factory):
    work = tmp_path_factory.mktemp('build')
    tree, out = work / 'mailserver', work / 'out'
    _tree(ROOT, tree)
    run = subprocess.run([_ansible_galaxy(), 'collection', 'build', '--output-path', str(out), str(tree)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    (tarball,) = out.glob('maillab-mailserver-*.tar.gz')
    with tarfile.open(tarball) as tar:
        members = {}
        for member in tar.getmembers():
            name = member.name.removeprefix('./').rstrip('/')
            members[name] = tar.extractfile(member).read() if member.isfile() else None
    return members


def test_no_cache_local_state_or_lab_harness(artifact):
    bad = sorted(name for name in artifact for pattern in FORBIDDEN if re.search(pattern, name))
    assert bad == []


def test_the_collection_itself_ships(artifact):
    for name in ('MANIFEST.json', 'FILES.json', 'README.md', 'meta/runtime.yml', 'changelogs/changelog.yaml',
                 'roles/common/tasks/main.yml', 'roles/postfix/files/image/Dockerfile',
                 'plugins/modules/mail_smoke.py', 'playbooks/challenge.yml',
                 'inventories/example/hosts.yml', 'inventories/example/group_vars/all/main.yml'):
        assert name in artifact, name


def test_no_lab_password_in_any_file(artifact):
    secrets = sorted(set(_secrets(yaml.safe_load(LAB_VARS.read_text()))))
    assert 'lab-admin-password' in secrets and 'password' in secrets, secrets
    found = []
    for name, data in sorted(artifact.items()):
        if data is None:
            continue
        text = data.decode('utf-8', 'replace')
        found += ['%s: %s' % (name, secret) for secret in secrets if _leaks(secret).search(text)]
    assert found == []


def test_no_invented_url(artifact):
    assert b'example.invalid' not in artifact['MANIFEST.json']
