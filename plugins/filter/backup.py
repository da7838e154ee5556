# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the backup role: which archived Maildir files a restore adds,
whether an archive's members match its manifest, which level a stack runs."""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError

MANIFEST_FORMAT = 1


def _norm(path):
    """'./a/b' and 'a/b' are the same member; directories keep their '/'."""
    path = str(path)
    while path.startswith('./'):
        path = path[2:]
    return path


def maildir_key(path):
    """What identifies an entry of the mail volume across moves and renames.

    A message in <maildir>/new/ or <maildir>/cur/ is the same message under
    either directory and whatever flags follow ':' in its name (Dovecot moves
    new/X to cur/X:2,S when it is seen), so its key is ('msg', maildir, base
    name). Files in tmp/ are deliveries in progress: None (never restored).
    Anything else (directories, Dovecot's index and uidlist files, Sieve
    scripts) is keyed by its path.
    """
    path = _norm(path)
    if path.endswith('/'):
        return ('path', path)
    parent, name = posixpath.split(path)
    maildir, sub = posixpath.split(parent)
    if sub in ('new', 'cur') and name:
        return ('msg', maildir, name.split(':', 1)[0])
    if sub == 'tmp':
        return None
    return ('path', path)


def maildir_restore_plan(members, existing=()):
    """The archive members a restore extracts onto the mail volume.

    members: paths in the archive, in archive order (a file listed twice, for
    instance new/X then cur/X:2,S because it moved while the backup ran, is
    one message: the later entry wins).
    existing: paths already on the volume (directories end with '/').
    A message whose base name is already in new/ or cur/ of its Maildir is
    skipped; any other entry is extracted only when its path is absent.
    Returns the chosen members as the archive names them, in archive order.
    """
    have = set()
    for path in existing or ():
        key = maildir_key(path)
        if key is not None:
            have.add(key)
    chosen = {}
    for index, path in enumerate(members or ()):
        if not str(path).strip():
            continue
        key = maildir_key(path)
        if key is None or key in have:
            continue
        chosen[key] = (index, str(path))
    return [path for _index, path in sorted(chosen.values())]


def maildir_message_count(paths):
    """Distinct messages (by Maildir and base name) among paths."""
    return len({key for key in (maildir_key(p) for p in paths or ()) if key and key[0] == 'msg'})


def backup_manifest_problems(manifest, checksums):
    """Why an unpacked archive cannot be trusted, one sentence per problem.

    manifest: the archive's manifest.json (a dict with format and members,
    each {name, sha256, size}).
    checksums: {member name: sha256} computed from the unpacked files.
    Returns [] when every member is present with its checksum and nothing
    unlisted came along (manifest.json itself aside).
    """
    if not isinstance(manifest, dict):
        return ['manifest.json is not a JSON object']
    problems = []
    if manifest.get('format') != MANIFEST_FORMAT:
        problems.append('manifest format %r is not %d (archive made by another version of maillab.mailserver?)'
                        % (manifest.get('format'), MANIFEST_FORMAT))
    members = manifest.get('members')
    if not isinstance(members, list) or not members:
        return problems + ['the manifest lists no members']
    listed = set()
    for member in members:
        name = _norm(member.get('name', '')) if isinstance(member, dict) else ''
        if not name:
            problems.append('a manifest entry has no name')
            continue
        listed.add(name)
        actual = checksums.get(name)
        if actual is None:
            problems.append('%s is listed in the manifest but missing from the archive' % name)
        elif actual.lower() != str(member.get('sha256', '')).lower():
            problems.append('%s: sha256 %s does not match the manifest (%s)' % (name, actual, member.get('sha256')))
    for name in sorted(set(_norm(n) for n in checksums) - listed - {'manifest.json'}):
        problems.append('%s is in the archive but not in the manifest' % name)
    return problems


def maillab_stack_level(services, level_services):
    """The level whose services are exactly those given.

    services: org.maillab.service labels of a stack's containers.
    level_services: {level: [service, ...]} (common's __common_level_services).
    Returns the level ('1', '2', '3' or 'challenge'), '' when the stack has
    no containers, 'partial' when the set matches no level.
    """
    have = set(services or ())
    if not have:
        return ''
    for level, wanted in (level_services or {}).items():
        if set(wanted) == have:
            return str(level)
    return 'partial'


def maillab_stack_services(containers):
    """{service: {name, running, state, image, volumes, binds}} of a stack.

    containers: docker_host_info's containers (verbose_output: true) of one
    stack; service is the label org.maillab.service. volumes and binds map a
    mount point in the container to the volume name or host path.
    """
    out = {}
    for container in containers or ():
        labels = container.get('Labels') or {}
        service = labels.get('org.maillab.service')
        if not service:
            continue
        mounts = container.get('Mounts') or []
        out[service] = {
            'name': (container.get('Names') or ['/?'])[0].lstrip('/'),
            'state': container.get('State', ''),
            'running': container.get('State') == 'running',
            'image': container.get('ImageID') or container.get('Image', ''),
            'volumes': {m.get('Destination'): m.get('Name') for m in mounts if m.get('Type') == 'volume'},
            'binds': {m.get('Destination'): m.get('Source') for m in mounts if m.get('Type') == 'bind'},
        }
    return out


def maillab_stack_not_running(services, wanted, prefix=''):
    """Names of the containers of the wanted services that do not run.

    services: maillab_stack_services' result; wanted: service labels (a
    level's list). A service without a container is named as the roles name
    it by default (<prefix>mail-<service>), a stopped one by its own name.
    """
    out = []
    for service in wanted or ():
        found = (services or {}).get(service)
        if not found:
            out.append('%smail-%s (absent)' % (prefix or '', service))
        elif not found.get('running'):
            out.append('%s (%s)' % (found.get('name'), found.get('state') or 'not running'))
    return out


def backup_members(stat_results, root):
    """[{name, sha256, size}] of the files ansible.builtin.stat looked at
    (loop results, checksum_algorithm sha256), named relative to root,
    sorted by name."""
    root = str(root).rstrip('/') + '/'
    out = []
    for result in stat_results or ():
        stat = result.get('stat', {}) if isinstance(result, dict) else {}
        path = stat.get('path', '')
        if not path.startswith(root):
            raise AnsibleFilterError('%s is not under %s' % (path, root))
        out.append({'name': path[len(root):], 'sha256': stat.get('checksum', ''), 'size': stat.get('size', 0)})
    return sorted(out, key=lambda m: m['name'])


def without_secrets(items, keys=('password', 'password_hash')):
    """Copies of the dicts in items without the secret keys (mailserver_users
    as an archive may hold it)."""
    return [{k: v for k, v in item.items() if k not in keys} for item in items or ()]


class FilterModule(object):
    def filters(self):
        return {
            'maildir_restore_plan': maildir_restore_plan,
            'maildir_message_count': maildir_message_count,
            'backup_manifest_problems': backup_manifest_problems,
            'maillab_stack_level': maillab_stack_level,
            'maillab_stack_services': maillab_stack_services,
            'maillab_stack_not_running': maillab_stack_not_running,
            'backup_members': backup_members,
            'without_secrets': without_secrets,
        }
