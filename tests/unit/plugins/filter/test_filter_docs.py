"""Every filter the collection exports is documented, and ansible-doc shows it.

The filters are read from the FilterModule classes themselves, so a new
filter without its plugins/filter/<name>.yml fails here.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
FILTER_DIR = ROOT / 'plugins' / 'filter'
COLLECTION = 'maillab.mailserver'


def exported_filters():
    """{filter name: plugin file stem} of every FilterModule in plugins/filter."""
    names = {}
    for path in sorted(FILTER_DIR.glob('*.py')):
        module = importlib.import_module('ansible_collections.maillab.mailserver.plugins.filter.' + path.stem)
        for name in module.FilterModule().filters():
            assert name not in names, '%s is exported by both %s.py and %s.py' % (name, names[name], path.stem)
            names[name] = path.stem
    return names


FILTERS = sorted(exported_filters())


def doc_file(name):
    return yaml.safe_load((FILTER_DIR / (name + '.yml')).read_text())


def test_the_filters_are_found():
    assert len(FILTERS) >= 20 and 'duplicates' in FILTERS and 'maildir_restore_plan' in FILTERS


def test_every_doc_file_belongs_to_an_exported_filter():
    orphans = sorted(p.stem for p in FILTER_DIR.glob('*.yml') if p.stem not in FILTERS)
    assert orphans == [], 'documentation of filters no FilterModule exports'


@pytest.mark.parametrize('name', FILTERS)
def test_doc_file_is_complete(name):
    assert (FILTER_DIR / (name + '.yml')).exists(), 'plugins/filter/%s.yml is missing' % name
    data = doc_file(name)
    doc = data['DOCUMENTATION']
    assert doc['name'] == name
    for key in ('version_added', 'short_description', 'description', 'author'):
        assert doc.get(key), '%s: DOCUMENTATION has no %s' % (name, key)
    assert '_input' in doc.get('options', {}), '%s: the input (_input) is not documented' % name
    assert doc.get('positional', '').split(',')[0].strip() == '_input'
    for option in (o.strip() for o in doc['positional'].split(',')):
        assert option in doc['options'], '%s: positional %s has no option entry' % (name, option)
    assert '_value' in data.get('RETURN', {}), '%s: the result (_value) is not documented' % name
    assert '%s.%s' % (COLLECTION, name) in data.get('EXAMPLES', ''), '%s: no example uses the filter' % name


@pytest.fixture(scope='module')
def shown(ansible_doc):
    """What ansible-doc shows of every filter, in one call."""
    run = ansible_doc('-t', 'filter', '--json', *('%s.%s' % (COLLECTION, name) for name in FILTERS))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize('name', FILTERS)
def test_ansible_doc_shows_the_filter(shown, name):
    fqcn = '%s.%s' % (COLLECTION, name)
    assert fqcn in shown, '%s: ansible-doc does not know it' % fqcn
    doc = shown[fqcn]
    assert doc['doc']['short_description'] == doc_file(name)['DOCUMENTATION']['short_description']
    assert Path(doc['doc']['filename']).resolve() == (FILTER_DIR / (name + '.yml')).resolve(), \
        'ansible-doc read another copy of the collection'
    assert doc['return']['_value']


def test_ansible_doc_renders_every_filter(ansible_doc):
    run = ansible_doc('-t', 'filter', *('%s.%s' % (COLLECTION, name) for name in FILTERS))
    assert run.returncode == 0, run.stderr
    assert '[ERROR]' not in run.stderr and '[WARNING]' not in run.stderr, run.stderr
    for name in FILTERS:
        assert '> FILTER %s.%s ' % (COLLECTION, name) in run.stdout


def test_ansible_doc_lists_every_filter(ansible_doc):
    run = ansible_doc('-t', 'filter', '-l', COLLECTION)
    assert run.returncode == 0, run.stderr
    listed = {}
    for line in run.stdout.splitlines():
        if line.startswith(COLLECTION + '.'):
            fqcn, _sep, description = line.partition(' ')
            listed[fqcn[len(COLLECTION) + 1:]] = description.strip()
    assert sorted(listed) == FILTERS
    assert [name for name, description in listed.items() if description == 'UNDOCUMENTED'] == []
