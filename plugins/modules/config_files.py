#!/usr/bin/python
# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: config_files
short_description: Write a set of configuration files under one directory in one step
version_added: 0.9.0
description:
  - Makes the files listed in O(files) hold exactly the given contents, owner,
    group and mode, and removes the files listed in O(absent), all under one
    directory O(path), in a single module run.
  - It does for a set of files what M(ansible.builtin.template) or
    M(ansible.builtin.copy) do for one, so a role that renders many small files
    (Rspamd's C(local.d), Postfix's lookup tables) pays for one task instead of
    one per file. A handler notified by the task runs when any file changed.
  - Each file is written to a temporary file in its own directory and renamed
    over the old one, so a service that reads it never sees half a file.
  - An entry may name a template (C(src)) instead of its C(content); the action
    plugin renders it on the controller with the task's variables, looking in
    the role's C(templates/) directory as M(ansible.builtin.template) does.
author:
  - maillab.mailserver developers
extends_documentation_fragment:
  - maillab.mailserver.attributes
  - maillab.mailserver.attributes.check_mode_full
attributes:
  check_mode:
    details:
      - In check mode nothing is written or removed; the result lists what would be.
  diff_mode:
    support: full
    details:
      - The diff holds one entry per file written or removed. Use C(no_log) on the
        task when a file holds a secret.
  idempotent:
    support: full
  action:
    description: Runs an action plugin on the controller before the module.
    support: full
    details:
      - The action plugin renders the C(src) templates on the controller.
options:
  path:
    description:
      - The directory the files live in. Created with O(directory_mode) when
        missing; its parents must exist.
    type: path
    required: true
  files:
    description: The files to write.
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description:
          - The file's name relative to O(path); it may hold subdirectories
            (C(sql/domains.cf)), which are created with O(directory_mode).
          - Absolute names and C(..) components are refused.
        type: str
        required: true
      content:
        description: What the file holds. Give either this or O(files[].src).
        type: str
      src:
        description:
          - A template to render into the file, found like M(ansible.builtin.template)'s
            C(src) (the role's C(templates/) directory first).
          - Handled by the action plugin on the controller; the module receives
            the rendered text as O(files[].content).
        type: str
      vars:
        description:
          - Variables for this template alone, on top of the task's variables
            (what C(loop_var) gives a template in a loop).
        type: dict
      mode:
        description: The file's mode, when it differs from O(mode).
        type: raw
  absent:
    description: Names relative to O(path) to remove when present.
    type: list
    elements: str
    default: []
  owner:
    description: Owner of every file written and of the directories created. Unchanged when not given.
    type: str
  group:
    description: Group of every file written and of the directories created. Unchanged when not given.
    type: str
  mode:
    description: Mode of the files, in octal (V("0644")) or symbolic form.
    type: raw
    default: "0644"
  directory_mode:
    description: Mode of O(path) and of the subdirectories the module creates.
    type: raw
    default: "0755"
notes:
  - Files under O(path) that are in neither O(files) nor O(absent) are left alone.
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.copy
'''

EXAMPLES = r'''
- name: Render the Rspamd settings and turn two modules off
  maillab.mailserver.config_files:
    path: /srv/maillab/rspamd/local.d
    owner: root
    group: root
    mode: "0644"
    files:
      - dest: options.inc
        src: local.d/options.inc.j2
      - dest: rbl.conf
        content: "enabled = false;\n"
    absent:
      - fuzzy_check.conf
  notify: Reload rspamd

- name: Render one lookup file per map, secrets for root only
  maillab.mailserver.config_files:
    path: /srv/maillab/postfix/sql
    mode: "0600"
    directory_mode: "0700"
    files:
      - dest: domains.cf
        src: sql/mysql.cf.j2
        vars: {map: {table: domain, column: domain}}
      - dest: mailboxes.cf
        src: sql/mysql.cf.j2
        vars: {map: {table: mailbox, column: username}}
  no_log: true
'''

RETURN = r'''
path:
  description: The directory the files are under.
  returned: always
  type: str
  sample: /srv/maillab/rspamd/local.d
written:
  description: The names whose content was written (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [options.inc]
removed:
  description: The names removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [fuzzy_check.conf]
attributes_fixed:
  description: The names whose content was right but whose owner, group or mode was changed.
  returned: always
  type: list
  elements: str
  sample: []
'''

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.maillab.mailserver.plugins.module_utils import _config_files


def _read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _file_args(module, path, mode):
    return {
        'path': path, 'mode': mode, 'owner': module.params['owner'], 'group': module.params['group'],
        'secontext': None, 'attributes': None,
    }


def _make_dir(module, path, result):
    if os.path.isdir(path):
        return
    if module.check_mode:
        return
    try:
        os.mkdir(path)
    except OSError as exc:
        module.fail_json(msg='Cannot create the directory %s: %s' % (path, to_native(exc)), **result)
    module.set_fs_attributes_if_different(_file_args(module, path, module.params['directory_mode']), False)


def _write(module, path, data, mode, result):
    directory, name = os.path.split(path)
    try:
        handle, temp = tempfile.mkstemp(dir=directory, prefix='.%s.' % name)
        with os.fdopen(handle, 'wb') as out:
            out.write(data)
        module.set_fs_attributes_if_different(_file_args(module, temp, mode), False)
        os.replace(temp, path)
    except OSError as exc:
        module.fail_json(msg='Cannot write %s: %s' % (path, to_native(exc)), **result)


def run(module, result):
    root = module.params['path']
    files = module.params['files']
    absent = module.params['absent']
    names = [entry['dest'] for entry in files]

    problems = ['%s: %s' % (name, _config_files.name_problem(name))
                for name in names + absent if _config_files.name_problem(name)]
    repeated = _config_files.duplicates(names + absent)
    if repeated:
        problems.append('named more than once in files or absent: %s' % ', '.join(repeated))
    if problems:
        module.fail_json(msg='config_files under %s: %s' % (root, '; '.join(problems)), **result)
    missing = [name for name, entry in zip(names, files) if entry['content'] is None]
    if missing:
        module.fail_json(msg='config_files under %s: no content (and no src) for %s' % (root, ', '.join(missing)),
                         **result)

    if not os.path.isdir(os.path.dirname(root.rstrip('/')) or '/'):
        module.fail_json(msg='The parent of %s does not exist: create it first' % root, **result)

    wanted = {entry['dest']: to_bytes(entry['content'], errors='surrogate_or_strict') for entry in files}
    current = {name: _read(os.path.join(root, name)) for name in wanted}
    result['written'] = _config_files.content_changes(wanted, current)
    present = {name for name in absent if os.path.lexists(os.path.join(root, name))}
    result['removed'] = _config_files.removals(absent, present)
    diffs = [{'before_header': os.path.join(root, name), 'after_header': os.path.join(root, name),
              'before': to_native(current[name] or b'', errors='surrogate_or_replace'),
              'after': to_native(wanted[name], errors='surrogate_or_replace')}
             for name in result['written']]
    diffs += [{'before_header': os.path.join(root, name), 'after_header': '(absent)',
               'before': to_native(_read(os.path.join(root, name)) or b'', errors='surrogate_or_replace'),
               'after': ''} for name in result['removed']]
    if module._diff:
        result['diff'] = diffs

    _make_dir(module, root, result)
    for directory in _config_files.parent_dirs(names):
        _make_dir(module, os.path.join(root, directory), result)

    for entry in files:
        name = entry['dest']
        path = os.path.join(root, name)
        mode = entry['mode'] if entry['mode'] is not None else module.params['mode']
        if name in result['written']:
            if not module.check_mode:
                _write(module, path, wanted[name], mode, result)
        # In check mode this reports what it would change, and changes nothing.
        elif module.set_fs_attributes_if_different(_file_args(module, path, mode), False):
            result['attributes_fixed'].append(name)

    for name in result['removed']:
        if not module.check_mode:
            try:
                os.unlink(os.path.join(root, name))
            except OSError as exc:
                module.fail_json(msg='Cannot remove %s: %s' % (os.path.join(root, name), to_native(exc)), **result)

    result['changed'] = bool(result['written'] or result['removed'] or result['attributes_fixed'])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            files=dict(type='list', elements='dict', default=[], options=dict(
                dest=dict(type='str', required=True),
                content=dict(type='str'),
                src=dict(type='str'),
                vars=dict(type='dict'),
                mode=dict(type='raw'),
            )),
            absent=dict(type='list', elements='str', default=[]),
            owner=dict(type='str'),
            group=dict(type='str'),
            mode=dict(type='raw', default='0644'),
            directory_mode=dict(type='raw', default='0755'),
        ),
        supports_check_mode=True,
    )
    result = dict(changed=False, path=module.params['path'], written=[], removed=[], attributes_fixed=[])
    run(module, result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
