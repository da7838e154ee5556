"""The config_files action renders templates on the controller the way
ansible.builtin.template does (task variables, per-entry vars, trailing
newline kept), in a real ansible-playbook run against localhost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    greeting: hello
  tasks:
    - name: Render with config_files
      maillab.mailserver.config_files:
        path: "{{ out }}/batched"
        files: &files
          - {dest: plain.txt, src: line.j2}
          - {dest: sub/with-vars.txt, src: line.j2, vars: {greeting: bonjour}}
          - {dest: literal.txt, content: "{{ '{{' }} not a template {{ '}}' }}\\n"}
      register: batched

    - name: Render the same template with ansible.builtin.template
      ansible.builtin.template:
        src: line.j2
        dest: "{{ out }}/single.txt"
        mode: "0644"

    - name: Render again, nothing changes
      maillab.mailserver.config_files:
        path: "{{ out }}/batched"
        files: *files
      register: again

    - name: Report
      ansible.builtin.copy:
        content: "{{ [batched.changed, again.changed, batched.written | sort] | to_json }}"
        dest: "{{ out }}/report.json"
        mode: "0644"

    - name: A missing template fails naming the entry
      maillab.mailserver.config_files:
        path: "{{ out }}/batched"
        files:
          - {dest: broken.txt, src: no-such-template.j2}
      register: broken
      ignore_errors: true

    - name: Report the failure
      ansible.builtin.copy:
        content: "{{ broken.msg }}"
        dest: "{{ out }}/broken.txt"
        mode: "0644"
"""


def test_renders_like_template_and_is_idempotent(tmp_path):
    (tmp_path / 'templates').mkdir()
    (tmp_path / 'templates' / 'line.j2').write_text('{{ greeting }} from {{ inventory_hostname }}\n\n')
    (tmp_path / 'play.yml').write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    run = subprocess.run([str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,',
                          str(tmp_path / 'play.yml'), '-e', 'out=%s' % tmp_path],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    batched = tmp_path / 'batched'
    assert (batched / 'plain.txt').read_bytes() == (tmp_path / 'single.txt').read_bytes() == b'hello from localhost\n\n'
    assert (batched / 'sub' / 'with-vars.txt').read_text() == 'bonjour from localhost\n\n'
    assert (batched / 'literal.txt').read_text() == '{{ not a template }}\n'
    assert (tmp_path / 'report.json').read_text() == '[true, false, ["literal.txt", "plain.txt", "sub/with-vars.txt"]]'
    message = (tmp_path / 'broken.txt').read_text()
    assert 'files[0] (broken.txt)' in message and 'no-such-template.j2' in message
