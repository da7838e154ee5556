# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
name: build_inputs
short_description: List the files of image build directories with their checksums and modes
version_added: 0.9.0
description:
  - Walks each directory given, on the controller, and returns one entry per
    regular file found below it, C(<file name>:<SHA-1>:<mode>), sorted.
  - The common role hashes these entries (with the base image and the build
    arguments) into an image's tag, so a tag changes exactly when a build
    input does. Reading them in the lookup costs no module run on the target.
  - A directory that does not exist adds nothing.
author:
  - maillab.mailserver developers
options:
  _terms:
    description: The directories to walk.
    type: list
    elements: path
    required: true
'''

EXAMPLES = r'''
- name: Compute an image tag from its build inputs
  ansible.builtin.set_fact:
    image_tag: "{{ query('maillab.mailserver.build_inputs', role_path ~ '/files/image') | join('\n') | hash('sha256') }}"
'''

RETURN = r'''
_list:
  description: One C(<file name>:<SHA-1>:<mode>) entry per file, the mode in four octal digits, sorted.
  type: list
  elements: str
'''

import hashlib
import os
import stat

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase


def file_entries(directory):
    """The C(name:sha1:mode) entries of the regular files below directory."""
    entries = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                continue
            digest = hashlib.sha1()
            with open(path, 'rb') as handle:
                for block in iter(lambda: handle.read(65536), b''):
                    digest.update(block)
            entries.append('%s:%s:%04o' % (name, digest.hexdigest(), stat.S_IMODE(info.st_mode)))
    return entries


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        entries = []
        for term in terms:
            try:
                entries.extend(file_entries(term))
            except OSError as exc:
                raise AnsibleLookupError('Cannot read the build inputs under %s: %s' % (term, to_native(exc)))
        return sorted(entries)
