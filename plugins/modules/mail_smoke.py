#!/usr/bin/python
# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: mail_smoke
short_description: Smoke-test a mail server the way a real client does
version_added: 0.1.0
description:
  - Sends a uniquely tagged message over SMTP and, unless told not to, logs in
    over IMAP and waits until that very message is in the mailbox.
  - Can instead assert that the server refuses the message (a relay attempt,
    an unknown recipient, a spam sample), optionally with a given reply code.
  - It is a check, so it never reports a change; by default it deletes its
    test message once found, so real mailboxes do not fill with probes.
  - Uses only the Python standard library (C(smtplib), C(imaplib), C(ssl)) on the
    managed host.
  - "A failure names the step that failed and why in one line (for example
    C(SMTP MAIL FROM: server closed the connection (421 ...))), and the result
    still holds what was learnt up to that step, such as RV(smtp)."
author:
  - maillab.mailserver developers
extends_documentation_fragment:
  - maillab.mailserver.attributes
  - maillab.mailserver.attributes.check_mode_full
  - maillab.mailserver.attributes.diff_none
  - maillab.mailserver.attributes.reports_no_change
attributes:
  check_mode:
    details:
      - In check mode the module connects, greets (EHLO, IMAP CAPABILITY),
        upgrades to TLS and authenticates when asked, but sends nothing.
options:
  smtp_host:
    description: SMTP server address.
    type: str
    default: 127.0.0.1
  smtp_port:
    description: SMTP server port.
    type: int
    default: 25
  smtp_security:
    description:
      - C(none) plain SMTP, C(starttls) upgrade with STARTTLS (fails when not
        offered), C(tls) implicit TLS (submissions, port 465).
    type: str
    choices: [none, starttls, tls]
    default: none
  smtp_user:
    description: Authenticate with AUTH as this user before sending.
    type: str
  smtp_password:
    description: Password of O(smtp_user). Never logged nor returned.
    type: str
  helo:
    description: Name the client gives in EHLO.
    type: str
    default: mail-smoke.maillab.invalid
  mail_from:
    description: Envelope sender (MAIL FROM); an empty string sends the null sender.
    type: str
    required: true
  rcpt_to:
    description: Envelope recipients (RCPT TO).
    type: list
    elements: str
    required: true
  subject:
    description:
      - Subject of the generated message; V(maillab.mailserver smoke test) when
        not given. Mutually exclusive with O(raw_message).
    type: str
  body:
    description:
      - Text body of the generated message; V(This is a maillab.mailserver smoke test.)
        when not given. Mutually exclusive with O(raw_message).
    type: str
  raw_message:
    description:
      - A complete message (headers, blank line, body) sent as it is instead of
        a generated one. The module adds its tag header, and a Message-ID when
        missing, at the top.
    type: str
  expect:
    description:
      - C(accepted) fails unless every recipient and the message are accepted.
      - C(rejected) fails unless the server refuses the message (at MAIL, RCPT
        or DATA); no IMAP lookup is done then.
    type: str
    choices: [accepted, rejected]
    default: accepted
  expect_code:
    description:
      - With O(expect=rejected), the reply codes that count as the expected
        refusal, C(x) as a wildcard, comma separated, for example C(5xx) or C(550,554).
    type: str
  imap_check:
    description:
      - Log in over IMAP and wait for the message. Needs O(imap_user) and
        O(imap_password). Ignored with O(expect=rejected).
    type: bool
    default: true
  imap_host:
    description: IMAP server address; defaults to O(smtp_host).
    type: str
  imap_port:
    description: IMAP server port.
    type: int
    default: 143
  imap_security:
    description: C(none), C(starttls) or C(tls) (IMAPS, port 993).
    type: str
    choices: [none, starttls, tls]
    default: none
  imap_user:
    description: IMAP login.
    type: str
  imap_password:
    description: Password of O(imap_user). Never logged nor returned.
    type: str
  imap_folder:
    description: Folder in which the message is expected.
    type: str
    default: INBOX
  imap_timeout:
    description: Seconds to wait for the message to appear in O(imap_folder).
    type: float
    default: 30
  delete:
    description: Delete the test message once found.
    type: bool
    default: true
  validate_certs:
    description:
      - Verify the servers' TLS certificates and names. Set to V(false) only for
        self-signed lab certificates.
    type: bool
    default: true
  ca_path:
    description: CA bundle (PEM) to verify the servers' certificates with.
    type: path
  timeout:
    description: Seconds to wait for a connection or a reply.
    type: float
    default: 10
notes:
  - The test message carries an C(X-Maillab-Smoke) header with a random tag;
    the IMAP side searches for that header.
'''

EXAMPLES = r'''
- name: Send the lab's "Test Docker" message and find it over IMAP
  maillab.mailserver.mail_smoke:
    smtp_port: 2525
    mail_from: test@example.com
    rcpt_to: [user1@example.com]
    subject: Test Docker
    body: Ceci est un test.
    imap_user: user1@example.com
    imap_password: "{{ lab_password }}"

- name: Prove the server is no open relay
  maillab.mailserver.mail_smoke:
    smtp_port: 2525
    mail_from: test@example.com
    rcpt_to: [someone@elsewhere.example]
    expect: rejected
    expect_code: 5xx

- name: Submission with STARTTLS and AUTH, read back over IMAPS
  maillab.mailserver.mail_smoke:
    smtp_port: 587
    smtp_security: starttls
    smtp_user: user1@example.com
    smtp_password: "{{ vault_user1_password }}"
    mail_from: user1@example.com
    rcpt_to: [user2@example.com]
    imap_port: 993
    imap_security: tls
    imap_user: user2@example.com
    imap_password: "{{ vault_user2_password }}"
    ca_path: /etc/maillab/default/tls/ca.crt
'''

RETURN = r'''
tag:
  description: Random tag of this probe (value of the X-Maillab-Smoke header).
  returned: unless in check mode, once the message is built
  type: str
  sample: 3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f
message_id:
  description: Message-ID of the message sent.
  returned: unless in check mode, once the message is built
  type: str
  sample: <178.smoke.3f2b8c1e9d7a@maillab.invalid>
smtp:
  description:
    - What the SMTP server said.
    - On failure, what was learnt up to the failing step (RV(smtp.stage) names it).
  returned: always
  type: dict
  contains:
    stage:
      description:
        - The step at which the server refused the message (V(mail), V(rcpt) or V(data)); V(rcpt) too when the
          message was accepted but some recipients were refused.
        - On failure, the step that failed (V(connect), V(ehlo), V(starttls), V(auth), V(mail), V(rcpt) or V(data)).
        - V(null) when every step succeeded.
      returned: always
      type: str
      sample: rcpt
    banner:
      description: First line of the server's reply to EHLO (its name and greeting).
      returned: once the server answered EHLO
      type: str
      sample: mail.example.com
    capabilities:
      description: ESMTP extensions offered (after STARTTLS when used).
      returned: once the server answered EHLO
      type: list
      elements: str
      sample: [8BITMIME, PIPELINING, SIZE]
    tls:
      description: Whether the session runs over TLS (implicit TLS, or STARTTLS once it succeeded).
      returned: once connected
      type: bool
      sample: true
    code:
      description:
        - Code of the deciding reply, DATA's when the message was accepted, else the refusal's.
        - A 421 reply is the server closing the session at that step.
      returned: when the server refused or accepted the message
      type: int
      sample: 250
    text:
      description: Text of that reply.
      returned: when the server refused or accepted the message
      type: str
      sample: 2.0.0 Ok queued as 4XyZ12
    rcpt:
      description: The recipient whose refusal decided, when the message was refused at RCPT.
      returned: when every recipient was refused, or one with 421
      type: str
      sample: someone@elsewhere.example
    queue_id:
      description: The server's queue id, V(null) when its reply names none.
      returned: when the message was accepted
      type: str
      sample: 4XyZ12
    refused:
      description: Recipients refused, each address with C(code) and C(text) of its reply.
      returned: once MAIL FROM was sent, unless in check mode
      type: dict
      sample:
        someone@elsewhere.example:
          code: 554
          text: "5.7.1 <someone@elsewhere.example>: Relay access denied"
accepted:
  description: Whether the server accepted the message (for at least one recipient).
  returned: unless in check mode, once the message is built
  type: bool
  sample: true
found:
  description: Whether the message was seen over IMAP.
  returned: when the IMAP lookup ran
  type: bool
  sample: true
imap_uid:
  description: UID of the message in the folder.
  returned: when found
  type: int
  sample: 12
seconds_to_visible:
  description: Seconds from the server's acceptance to the message being visible over IMAP.
  returned: when found
  type: float
  sample: 0.21
folder_count:
  description: How many messages the folder held at the last look.
  returned: when the IMAP lookup ran
  type: int
  sample: 3
deleted:
  description: Whether the test message was deleted after it was found.
  returned: when found
  type: bool
  sample: true
imap_capabilities:
  description: IMAP capabilities seen (after login once logged in, else those before login).
  returned: when IMAP was contacted
  type: list
  elements: str
  sample: [IMAP4REV1, IDLE, UIDPLUS]
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.maillab.mailserver.plugins.module_utils import _smoke

DEFAULT_SUBJECT = 'maillab.mailserver smoke test'
DEFAULT_BODY = 'This is a maillab.mailserver smoke test.'


def run(module, result):
    """Probe as the parameters say, filling result in as it goes. Raises
    SmokeError at the first failure; result then holds what was learnt."""
    p = module.params
    conn = dict(timeout=p['timeout'], validate_certs=p['validate_certs'], ca_path=p['ca_path'])
    imap_wanted = p['imap_check'] and p['expect'] == 'accepted'
    imap_host = p['imap_host'] or p['smtp_host']

    result['smtp'] = {}
    smtp, sent = _smoke.smtp_connect(p['smtp_host'], p['smtp_port'], p['smtp_security'], helo=p['helo'],
                                     user=p['smtp_user'], password=p['smtp_password'], info=result['smtp'], **conn)
    try:
        if module.check_mode:
            if imap_wanted:
                imap, result['imap_capabilities'] = _smoke.imap_connect(imap_host, p['imap_port'],
                                                                        p['imap_security'], **conn)
                try:
                    result['imap_capabilities'] = _smoke.imap_login(imap, p['imap_user'], p['imap_password'])
                finally:
                    _smoke.imap_logout(imap)
            return result

        tag = _smoke.new_tag()
        message, message_id = _smoke.build_message(
            p['mail_from'], p['rcpt_to'], p['subject'] or DEFAULT_SUBJECT, p['body'] or DEFAULT_BODY,
            tag, raw_message=p['raw_message'])
        result.update(tag=tag, message_id=message_id, accepted=False)
        result['accepted'] = _smoke.smtp_send(smtp, p['mail_from'], p['rcpt_to'], message, sent)
        accepted_at = time.monotonic()
    finally:
        _smoke.smtp_quit(smtp)

    if p['expect'] == 'rejected':
        if result['accepted'] and not sent['refused']:
            raise _smoke.SmokeError('the message was accepted (%s %s) but a rejection was expected'
                                    % (sent['code'], sent['text']))
        refusal = sent if not result['accepted'] else next(iter(sent['refused'].values()))
        if not _smoke.code_matches(refusal['code'], p['expect_code']):
            raise _smoke.SmokeError('refused at %s with %s %s, but %s was expected'
                                    % (sent['stage'], refusal['code'], refusal['text'], p['expect_code']))
        return result

    if not result['accepted']:
        raise _smoke.SmokeError(_smoke.refusal_message(sent))
    if sent['refused']:
        rcpt, reply = next(iter(sent['refused'].items()))
        raise _smoke.SmokeError('recipient %s refused at RCPT: %s %s' % (rcpt, reply['code'], reply['text']))

    if not imap_wanted:
        return result
    imap, result['imap_capabilities'] = _smoke.imap_connect(imap_host, p['imap_port'], p['imap_security'], **conn)
    try:
        result['imap_capabilities'] = _smoke.imap_login(imap, p['imap_user'], p['imap_password'])
        uid, count = _smoke.imap_find(imap, p['imap_folder'], tag, p['imap_timeout'])
        result.update(found=uid is not None, folder_count=count)
        if uid is None:
            raise _smoke.SmokeError('message %s not seen in folder %s of %s after %s s (the folder holds %d messages)'
                                    % (message_id, p['imap_folder'], p['imap_user'], p['imap_timeout'], count))
        result['seconds_to_visible'] = round(time.monotonic() - accepted_at, 3)
        result['imap_uid'] = uid
        result['deleted'] = False
        if p['delete']:
            _smoke.imap_delete(imap, uid)
            result['deleted'] = True
    finally:
        _smoke.imap_logout(imap)
    return result


def main():
    argument_spec = dict(
        smtp_host=dict(type='str', default='127.0.0.1'),
        smtp_port=dict(type='int', default=25),
        smtp_security=dict(type='str', default='none', choices=['none', 'starttls', 'tls']),
        smtp_user=dict(type='str'),
        smtp_password=dict(type='str', no_log=True),
        helo=dict(type='str', default='mail-smoke.maillab.invalid'),
        mail_from=dict(type='str', required=True),
        rcpt_to=dict(type='list', elements='str', required=True),
        subject=dict(type='str'),
        body=dict(type='str'),
        raw_message=dict(type='str'),
        expect=dict(type='str', default='accepted', choices=['accepted', 'rejected']),
        expect_code=dict(type='str'),
        imap_check=dict(type='bool', default=True),
        imap_host=dict(type='str'),
        imap_port=dict(type='int', default=143),
        imap_security=dict(type='str', default='none', choices=['none', 'starttls', 'tls']),
        imap_user=dict(type='str'),
        imap_password=dict(type='str', no_log=True),
        imap_folder=dict(type='str', default='INBOX'),
        imap_timeout=dict(type='float', default=30),
        delete=dict(type='bool', default=True),
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        timeout=dict(type='float', default=10),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_together=[('smtp_user', 'smtp_password'), ('imap_user', 'imap_password')],
        mutually_exclusive=[('raw_message', 'subject'), ('raw_message', 'body')],
    )
    p = module.params
    if not p['rcpt_to']:
        module.fail_json(msg='rcpt_to needs at least one recipient')
    if p['expect_code'] and p['expect'] != 'rejected':
        module.fail_json(msg='expect_code only applies with expect=rejected')
    if p['imap_check'] and p['expect'] == 'accepted' and not p['imap_user']:
        module.fail_json(msg='imap_check needs imap_user and imap_password (or set imap_check: false to only send)')
    result = {'changed': False}
    try:
        run(module, result)
    except _smoke.SmokeError as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # a bug of this module: still one line, with what was learnt
        module.fail_json(msg='mail_smoke failed unexpectedly: %s: %s' % (type(exc).__name__, exc), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
