from __future__ import annotations

from ansible_collections.maillab.mailserver.plugins.module_utils._apt_sources import apt_mirrors

DEB822 = """Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822():
    assert apt_mirrors([DEB822]) == {'mirror': 'http://deb.debian.org/debian',
                                     'security': 'http://deb.debian.org/debian-security'}


def test_one_line_format_with_options_and_comments():
    text = ('# deb http://commented.example/debian bookworm main\n'
            'deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n'
            'deb-src http://src.example/debian bookworm main\n')
    assert apt_mirrors([text]) == {'mirror': 'http://mirror.example/debian',
                                   'security': 'http://mirror.example/debian-security'}


def test_disabled_stanza_and_nothing_found():
    text = 'Types: deb\nURIs: http://off.example/debian\nSuites: trixie\nEnabled: no\n'
    assert apt_mirrors([text, '']) == {'mirror': '', 'security': ''}
