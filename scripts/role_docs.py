#!/usr/bin/env python3
"""Keep the variable tables of README.md and roles/*/README.md, and the
`default:` of every option in the roles' argument specs, equal to the roles'
defaults/main.yml.

    scripts/role_docs.py          rewrite the tables and the specs' defaults
    scripts/role_docs.py --check  exit 1 when a README or a spec is out of step

Each role's meta/argument_specs.yml (entry point main) is the interface; the
table shows each option's type, its default from defaults/main.yml and its
description. --check also fails when a default has no spec entry or a spec
entry has no default (the domain and the secrets, which have none on purpose,
aside). A secret's spec carries no `default:` even where its role derives one
from the stack's contract (ansible-core shows a spec's templated defaults in
its validation errors); its description names where it comes from.
A role README's own sections (from its first `## ` heading on, such as an
example playbook) are kept below the generated table.
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
ROLES = ['common', 'postfix', 'dovecot', 'mariadb', 'postfixadmin', 'webmail', 'rspamd', 'backup', 'dns', 'mailbox_move']
# Inputs without a default: the play fails naming them when they are needed.
NO_DEFAULT = {'mailserver_domain', 'mailbox_move_user', 'mailbox_move_store', 'mailserver_db_admin_password', 'mailserver_db_reader_password',
              'mailserver_db_postfix_password', 'mailserver_db_dkim_password', 'mailserver_db_webmail_password',
              'mailserver_db_password_changer_password', 'mailserver_rspamd_enable_password',
              'postfixadmin_superadmin', 'postfixadmin_setup_password', 'rspamd_controller_password'}
# Required whenever their role runs (required: true in the spec).
REQUIRED = {'mailserver_domain', 'postfixadmin_superadmin', 'postfixadmin_setup_password', 'rspamd_controller_password'}


def _secret(name, opt):
    return opt.get('no_log') or name.endswith('_password')


def _text(value):
    if isinstance(value, list):
        return ' '.join(_text(v) for v in value)
    # ansible-doc's C(code) markup reads as Markdown code in the READMEs.
    return re.sub(r'C\(([^()]*)\)', r'`\1`', ' '.join(str(value).split()))


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


class _IndentedDumper(yaml.SafeDumper):
    """Block sequences indented under their key, as yamllint wants them."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _yaml_value(value, indent=10, width=110):
    """A default as YAML after `default: ` (JSON is YAML's flow style); a long
    string continues on escaped line breaks, a long list or dict in block style."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    text = json.dumps(value)
    if len(text) <= width:
        return text
    if isinstance(value, str):
        body = text[1:-1]
        chunks = [body[i:i + width] for i in range(0, len(body), width)]
        # A chunk must not end inside an escape sequence.
        for i in range(len(chunks) - 1):
            while chunks[i].endswith('\\') and not chunks[i].endswith('\\\\'):
                chunks[i + 1] = chunks[i][-1] + chunks[i + 1]
                chunks[i] = chunks[i][:-1]
        return '"' + ('\\\n' + ' ' * indent).join(chunks) + '"'
    block = yaml.dump(value, Dumper=_IndentedDumper, default_flow_style=False, sort_keys=False, width=width).rstrip('\n')
    return '\n' + '\n'.join(' ' * indent + line for line in block.split('\n'))


def spec_text(role, spec, defaults):
    """meta/argument_specs.yml with each main option's default: and required:
    lines taken from defaults/main.yml and REQUIRED (every other line kept)."""
    path = ROOT / 'roles' / role / 'meta' / 'argument_specs.yml'
    lines = path.read_text().splitlines()
    out, in_main, current, skipping = [], False, None, False
    for line in lines:
        if skipping and line.startswith(' ' * 10):
            continue  # the rest of a default being rewritten
        skipping = False
        if re.match(r'^  [a-z_]+:$', line):
            in_main = line == '  main:'
            current = None
        option = re.match(r'^      ([a-z_0-9]+):$', line) if in_main else None
        if option:
            current = option.group(1)
        elif current and re.match(r'^        (default|required):', line):
            skipping = True
            continue  # rewritten below, after type:/elements:
        out.append(line)
        if current and re.match(r'^        (type|elements):', line):
            opt = spec['options'][current]
            # Insert once, after the last of type:/elements:.
            if line.startswith('        type:') and opt.get('elements'):
                continue
            if current in REQUIRED:
                out.append('        required: true')
            elif current in defaults and not _secret(current, opt):
                value = _yaml_value(defaults[current])
                out.append('        default:' + (value if value.startswith('\n') else ' ' + value))
    return '\n'.join(out) + '\n'


def table(role, spec, defaults):
    lines = ['### Role `%s`' % role, '', _text(spec.get('short_description', '')), '',
             '| variable | type | default | description |', '| --- | --- | --- | --- |']
    for name, opt in spec.get('options', {}).items():
        kind = opt.get('type', 'str')
        if opt.get('elements'):
            kind += ' of ' + opt['elements']
        default = (_default(defaults[name]) if name in defaults else '(required)' if name in REQUIRED
                   else '(no default)' if name in NO_DEFAULT else '')
        desc = _text(opt.get('description', '')).replace('|', '\\|')
        for sub, subopt in (opt.get('options') or {}).items():
            desc += '<br>`%s`: %s' % (sub, _text(subopt.get('description', '')).replace('|', '\\|'))
        lines.append('| `%s` | %s | %s | %s |' % (name, kind, default, desc))
    return '\n'.join(lines) + '\n'


def _paragraphs(value):
    """The spec's description: each list item is a paragraph."""
    items = value if isinstance(value, list) else [value]
    return '\n\n'.join(_text(item) for item in items)


def _handwritten(path):
    """The hand-written part of a role's README: everything from its first
    second-level heading on (the generated part has none), or ''."""
    text = path.read_text() if path.exists() else ''
    start = text.find('\n## ')
    return text[start:] if start >= 0 else ''


def role_readme(role, spec, defaults, handwritten=''):
    return ('# Role maillab.mailserver.%s\n\n%s\n\n'
            'Generated by scripts/role_docs.py from meta/argument_specs.yml and defaults/main.yml;\n'
            'the project README explains how the roles fit together.\n\n%s%s'
            % (role, _paragraphs(spec.get('description', spec.get('short_description', ''))),
               table(role, spec, defaults).split('\n', 2)[2], handwritten))


def render():
    parts, problems, readmes = [], [], {}
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
        readme = ROOT / 'roles' / role / 'README.md'
        readmes[readme] = role_readme(role, spec, defaults, _handwritten(readme))
        readmes[ROOT / 'roles' / role / 'meta' / 'argument_specs.yml'] = spec_text(role, spec, defaults)
    return '\n'.join(parts), problems, readmes


def main(argv):
    generated, problems, readmes = render()
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
        for path, content in readmes.items():
            if not path.exists() or path.read_text() != content:
                problems.append('%s is out of date: run scripts/role_docs.py' % path.relative_to(ROOT))
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    README.write_text(new)
    for path, content in readmes.items():
        path.write_text(content)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
