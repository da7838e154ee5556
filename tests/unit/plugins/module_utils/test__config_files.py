"""The pure logic of config_files: names, parents, what changes."""

from __future__ import annotations

import pytest

from ansible_collections.maillab.mailserver.plugins.module_utils import _config_files as cf


@pytest.mark.parametrize('name', ['main.cf', 'sql/domains.cf', 'local.d/rbl.conf', 'a/b/c'])
def test_relative_names_are_accepted(name):
    assert cf.name_problem(name) is None


@pytest.mark.parametrize('name, words', [
    ('', 'empty'),
    ('/etc/passwd', 'absolute'),
    ('../main.cf', "'..'"),
    ('sql/../../x', "'..'"),
    ('a//b', 'empty component'),
    ('./main.cf', "'.'"),
    ('sql/', 'empty component'),
    ('a\x00b', 'NUL'),
])
def test_names_that_could_leave_the_directory_are_refused(name, words):
    assert words in cf.name_problem(name)


def test_duplicates_are_named_once_each():
    assert cf.duplicates(['a', 'b', 'a', 'c', 'a', 'b']) == ['a', 'b']
    assert cf.duplicates(['a', 'b']) == []


def test_parent_dirs_come_before_their_children_once():
    assert cf.parent_dirs(['main.cf', 'sql/a.cf', 'sql/b.cf', 'x/y/z.cf']) == ['sql', 'x', 'x/y']
    assert cf.parent_dirs(['main.cf']) == []


def test_only_missing_or_different_contents_are_written():
    wanted = {'same': b'1\n', 'other': b'2\n', 'new': b'3\n'}
    current = {'same': b'1\n', 'other': b'old\n', 'new': None}
    assert cf.content_changes(wanted, current) == ['other', 'new']


def test_removals_are_the_absent_names_present():
    assert cf.removals(['a', 'b', 'c'], {'b', 'z'}) == ['b']
