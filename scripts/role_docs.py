#!/usr/bin/env python3
"""Keep the README's variable tables equal to the roles' argument specs.

    scripts/role_docs.py          rewrite the tables in README.md
    scripts/role_docs.py --check  exit 1 when README.md or a role is out of step

Each role's meta/argument_specs.yml (entry point main) is the interface; the
table shows each option's type, its default from defaults/main.yml and its
description. --check also fails when a default has no spec entry or a spec
entry has no default (mailserver_domain, which has none on purpose, aside).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
BEGIN, END = '<!-- BEGIN VARIABLES (scripts/role_docs.py) -->', '<!-- END VARIABLES -->'
ROLES = ['common', 'postfix', 'dovecot', 'mariadb', 'postfixadmin', 'rspamd']
NO_DEFAULT = {'mailserver_domain'}


def _text(value):
    if isinstance(value, list):
        return ' '.join(_text(v) for v in value)
    return ' '.join(str(value).split())


def _default(value):
    if isinstance(value, str):
        return '`%s`' % value.replace('|', '\\|') if value else '`""`'
    return '`%s`' % json.dumps(value).replace('|', '\\|')


def load(role):
    spec_file = ROOT / 'roles' / role / 'meta' / 'argument_specs.yml'
    if not spec_file.exists():
        return None
    spec = yaml.safe_load(spec_file.read_text())['argument_specs']['main']
    defaults_file = ROOT / 'roles' / role / 'defaults' / 'main.yml'
    defaults = yaml.safe_load(defaults_file.read_text()) or {} if defaults_file.exists() else {}
    return spec, defaults


def table(role, spec, defaults):
    lines = ['### Role `%s`' % role, '', _text(spec.get('short_description', '')), '',
             '| variable | type | default | description |', '| --- | --- | --- | --- |']
    for name, opt in spec.get('options', {}).items():
        kind = opt.get('type', 'str')
        if opt.get('elements'):
            kind += ' of ' + opt['elements']
        default = _default(defaults[name]) if name in defaults else '(required)' if name in NO_DEFAULT else ''
        desc = _text(opt.get('description', '')).replace('|', '\\|')
        for sub, subopt in (opt.get('options') or {}).items():
            desc += '<br>`%s`: %s' % (sub, _text(subopt.get('description', '')).replace('|', '\\|'))
        lines.append('| `%s` | %s | %s | %s |' % (name, kind, default, desc))
    return '\n'.join(lines) + '\n'


def render():
    parts, problems = [], []
    for role in ROLES:
        loaded = load(role)
        if loaded is None:
            continue
        spec, defaults = loaded
        options = set(spec.get('options', {}))
        for name in sorted(set(defaults) - options):
            problems.append('roles/%s: default %s has no argument_specs entry' % (role, name))
        for name in sorted(options - set(defaults) - NO_DEFAULT):
            problems.append('roles/%s: argument_specs option %s has no default' % (role, name))
        parts.append(table(role, spec, defaults))
    return '\n'.join(parts), problems


def main(argv):
    generated, problems = render()
    text = README.read_text()
    pattern = re.compile(re.escape(BEGIN) + '.*?' + re.escape(END), re.S)
    if not pattern.search(text):
        problems.append('README.md lacks the markers %s ... %s' % (BEGIN, END))
        new = text
    else:
        new = pattern.sub(lambda _m: BEGIN + '\n\n' + generated + '\n' + END, text)
    if '--check' in argv:
        if new != text:
            problems.append('README.md variable tables are out of date: run scripts/role_docs.py')
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    README.write_text(new)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
