"""config_files run in-process against a temporary directory."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.maillab.mailserver.plugins.modules import config_files


def run(capsys, check_mode=False, diff=False, **args):
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        config_files.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_creates_directories_and_then_changes_nothing(tmp_path, capsys):
    root = tmp_path / 'postfix'
    files = [{'dest': 'main.cf', 'content': 'a = 1\n'}, {'dest': 'sql/domains.cf', 'content': 'x\n', 'mode': '0600'}]
    rc, out = run(capsys, path=str(root), files=files, mode='0644', directory_mode='0700')
    assert rc == 0, out
    assert out['changed'] and sorted(out['written']) == ['main.cf', 'sql/domains.cf']
    assert (root / 'main.cf').read_text() == 'a = 1\n'
    assert mode(root / 'main.cf') == 0o644 and mode(root / 'sql/domains.cf') == 0o600
    assert mode(root) == 0o700 and mode(root / 'sql') == 0o700
    rc, out = run(capsys, path=str(root), files=files, mode='0644', directory_mode='0700')
    assert rc == 0 and out['changed'] is False and out['written'] == [] and out['attributes_fixed'] == []
    assert not [name for name in os.listdir(root) if name.startswith('.')], 'no temporary file is left behind'


def test_changed_content_is_replaced_and_a_mode_drift_fixed(tmp_path, capsys):
    (tmp_path / 'a').write_text('old\n')
    (tmp_path / 'b').write_text('keep\n')
    os.chmod(tmp_path / 'b', 0o666)
    rc, out = run(capsys, path=str(tmp_path), files=[{'dest': 'a', 'content': 'new\n'}, {'dest': 'b', 'content': 'keep\n'}])
    assert rc == 0 and out['written'] == ['a'] and out['attributes_fixed'] == ['b']
    assert (tmp_path / 'a').read_text() == 'new\n' and mode(tmp_path / 'b') == 0o644


def test_absent_files_are_removed_and_missing_ones_ignored(tmp_path, capsys):
    (tmp_path / 'rbl.conf').write_text('enabled = false;\n')
    rc, out = run(capsys, path=str(tmp_path), absent=['rbl.conf', 'never-there.conf'])
    assert rc == 0 and out['changed'] and out['removed'] == ['rbl.conf']
    assert not (tmp_path / 'rbl.conf').exists()
    rc, out = run(capsys, path=str(tmp_path), absent=['rbl.conf'])
    assert out['changed'] is False


def test_check_mode_reports_and_touches_nothing(tmp_path, capsys):
    (tmp_path / 'gone').write_text('x')
    rc, out = run(capsys, check_mode=True, diff=True, path=str(tmp_path / 'new'), files=[{'dest': 'f', 'content': 'y\n'}])
    assert rc == 0 and out['changed'] and out['written'] == ['f']
    assert out['diff'][0]['after'] == 'y\n' and out['diff'][0]['before'] == ''
    assert not (tmp_path / 'new').exists()
    rc, out = run(capsys, check_mode=True, path=str(tmp_path), absent=['gone'])
    assert out['removed'] == ['gone'] and (tmp_path / 'gone').exists()


@pytest.mark.parametrize('dest, words', [('../escape', "'..'"), ('/etc/x', 'absolute')])
def test_a_name_outside_the_directory_fails_naming_it(tmp_path, capsys, dest, words):
    rc, out = run(capsys, path=str(tmp_path), files=[{'dest': dest, 'content': 'x'}])
    assert rc == 1 and dest in out['msg'] and words in out['msg']
    assert os.listdir(tmp_path) == []


def test_a_name_given_twice_fails(tmp_path, capsys):
    rc, out = run(capsys, path=str(tmp_path), files=[{'dest': 'a', 'content': '1'}], absent=['a'])
    assert rc == 1 and 'more than once' in out['msg'] and "'a'" not in out['msg'] and ': a' in out['msg']


def test_an_entry_without_content_fails_naming_it(tmp_path, capsys):
    rc, out = run(capsys, path=str(tmp_path), files=[{'dest': 'empty.cf'}])
    assert rc == 1 and 'empty.cf' in out['msg'] and 'no content' in out['msg']


def test_a_missing_parent_fails_clearly(tmp_path, capsys):
    rc, out = run(capsys, path=str(tmp_path / 'no' / 'such'), files=[{'dest': 'a', 'content': '1'}])
    assert rc == 1 and 'does not exist' in out['msg'] and str(tmp_path / 'no') in out['msg']
