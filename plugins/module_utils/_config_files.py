# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the config_files module: which names are acceptable and
what has to change for a set of files under one directory to hold exactly
the wanted contents. No file is touched here."""

from __future__ import annotations

import posixpath


def name_problem(name):
    """Why ``name`` cannot be a file under the managed directory, or None.

    A name is a relative path inside the directory: not empty, not absolute,
    no ``.`` or ``..`` component and no empty component (``a//b``), so a
    rendered file can never land outside the directory it was given."""
    if not isinstance(name, str) or not name:
        return 'the name is empty'
    if name.startswith('/'):
        return 'the name is absolute; give it relative to path'
    if '\x00' in name:
        return 'the name holds a NUL byte'
    parts = name.split('/')
    if any(part in ('', '.', '..') for part in parts):
        return "the name must not hold '.', '..' or an empty component"
    return None


def duplicates(items):
    """Items that appear more than once, each listed once, in first-seen order
    (also the collection's duplicates filter)."""
    seen, repeated = set(), []
    for item in items:
        if item in seen and item not in repeated:
            repeated.append(item)
        seen.add(item)
    return repeated


def parent_dirs(names):
    """The subdirectories the names need below the managed directory,
    parents before children, each once."""
    dirs = []
    for name in names:
        parent = posixpath.dirname(name)
        chain = []
        while parent:
            chain.append(parent)
            parent = posixpath.dirname(parent)
        for directory in reversed(chain):
            if directory not in dirs:
                dirs.append(directory)
    return dirs


def content_changes(wanted, current):
    """The names whose content must be written.

    ``wanted`` maps each name to the bytes it must hold; ``current`` maps
    each name to the bytes it holds now, or None when there is no such file.
    """
    return [name for name, data in wanted.items() if current.get(name) != data]


def removals(absent, present):
    """The names listed as absent that exist now (``present`` is a set)."""
    return [name for name in absent if name in present]
