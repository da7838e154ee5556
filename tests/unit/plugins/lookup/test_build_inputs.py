"""build_inputs lists each file once with the checksum and mode find would give."""

from __future__ import annotations

import hashlib
import os

from ansible_collections.maillab.mailserver.plugins.lookup import build_inputs


def test_entries_name_checksum_and_mode_of_every_file(tmp_path):
    (tmp_path / 'Dockerfile').write_text('FROM scratch\n')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'run').write_text('#!/bin/sh\n')
    os.chmod(tmp_path / 'sub' / 'run', 0o755)
    os.chmod(tmp_path / 'Dockerfile', 0o644)
    os.symlink('Dockerfile', tmp_path / 'link')
    entries = build_inputs.LookupModule().run([str(tmp_path), str(tmp_path / 'absent')], {})
    sha = hashlib.sha1(b'FROM scratch\n').hexdigest()
    assert entries == sorted(['Dockerfile:%s:0644' % sha,
                              'run:%s:0755' % hashlib.sha1(b'#!/bin/sh\n').hexdigest()])


def test_a_changed_byte_or_mode_changes_the_entries(tmp_path):
    (tmp_path / 'f').write_text('a')
    lookup = build_inputs.LookupModule()
    before = lookup.run([str(tmp_path)], {})
    (tmp_path / 'f').write_text('b')
    after_content = lookup.run([str(tmp_path)], {})
    os.chmod(tmp_path / 'f', 0o600)
    after_mode = lookup.run([str(tmp_path)], {})
    assert len({tuple(before), tuple(after_content), tuple(after_mode)}) == 3
