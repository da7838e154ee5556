# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find the Debian mirrors named in apt source files (one-line and deb822)."""

from __future__ import annotations

import re

_ONE_LINE = re.compile(r'^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)')


def _entries(text):
    """Yield (uri, suite) pairs from one file's text, either format."""
    # deb822 stanzas are separated by blank lines.
    for stanza in re.split(r'\n\s*\n', text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith('#') or ':' not in line or line[:1].isspace():
                continue
            key, value = line.split(':', 1)
            fields[key.strip().lower()] = value.strip()
        if 'uris' in fields and 'suites' in fields:
            if fields.get('enabled', 'yes').lower() == 'no':
                continue
            if 'deb' not in fields.get('types', 'deb').split():
                continue
            for uri in fields['uris'].split():
                for suite in fields['suites'].split():
                    yield uri, suite
    for line in text.splitlines():
        match = _ONE_LINE.match(line)
        if match:
            yield match.group(1), match.group(2)


def apt_mirrors(texts):
    """Return {'mirror': uri, 'security': uri} from apt source file texts.

    The mirror is the first URI serving a suite that is not a security suite;
    the security mirror is the first serving a ``-security`` (or ``/updates``)
    suite, else derived from the mirror (``.../debian`` -> ``.../debian-security``).
    Empty strings when nothing fits.
    """
    mirror = security = ''
    for text in texts:
        for uri, suite in _entries(text):
            uri = uri.rstrip('/')
            if not uri.startswith(('http://', 'https://', 'file:/')):
                continue
            if suite.endswith('-security') or suite.endswith('/updates'):
                security = security or uri
            else:
                mirror = mirror or uri
    if mirror and not security:
        security = mirror + '-security' if mirror.endswith('/debian') else mirror
    return {'mirror': mirror, 'security': security}
