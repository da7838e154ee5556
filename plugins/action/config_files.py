# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of maillab.mailserver.config_files: renders each entry's
``src`` template on the controller (the role's templates/ first, with the
task's variables plus the entry's ``vars``), then runs the module with the
rendered text as the entry's ``content``."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = True

    def _render(self, files, task_vars):
        template = lookup_loader.get('ansible.builtin.template', loader=self._loader, templar=self._templar)
        rendered = []
        for index, entry in enumerate(files):
            if not isinstance(entry, Mapping):
                raise AnsibleError('files[%d] must be a dictionary with dest and content or src, got %r' % (index, entry))
            entry = dict(entry)
            src = entry.pop('src', None)
            extra = entry.pop('vars', None) or {}
            where = 'files[%d] (%s)' % (index, entry.get('dest', 'no dest'))
            if src is None:
                rendered.append(entry)
                continue
            if entry.get('content') is not None:
                raise AnsibleError('%s: give content or src, not both' % where)
            if not isinstance(extra, Mapping):
                raise AnsibleError('%s: vars must be a dictionary' % where)
            try:
                entry['content'] = to_native(template.run([src], task_vars, template_vars=dict(extra))[0])
            except AnsibleError as exc:
                raise AnsibleError('%s: cannot render the template %s: %s' % (where, src, to_native(exc)))
            rendered.append(entry)
        return rendered

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp

        args = dict(self._task.args)
        files = args.get('files') or []
        if not isinstance(files, list):
            result.update(failed=True, msg='files must be a list of dictionaries, got %s' % type(files).__name__)
            return result
        try:
            args['files'] = self._render(files, task_vars)
        except AnsibleError as exc:
            result.update(failed=True, msg=to_native(exc))
            return result

        result.update(self._execute_module(module_name='maillab.mailserver.config_files',
                                           module_args=args, task_vars=task_vars))
        return result
