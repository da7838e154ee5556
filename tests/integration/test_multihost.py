"""Beyond one host (molecule/multihost): two MX hosts with Dovecot proxies,
two mail stores, a three-node Galera database, each host a network namespace
of this machine with its own Docker Engine (molecule/multihost/hosts.sh).

Mail is sent the way other mail servers send it: to an MX host's port 25,
the next MX when one does not answer or answers 4xx. What arrived is counted
on the stores themselves (doveadm search in each store's container) and read
back over IMAPS through the proxies, with the scenario's CA.

Environment (the scenario's verify.yml sets it from the inventory):
  MAILLAB_MH_MX       name=address,... of the MX hosts
  MAILLAB_MH_STORES   store name=host name,... (mailserver_stores, and the test host holding each)
  MAILLAB_MH_DB       the database hosts (Galera nodes)
  MAILLAB_MH_HOSTS_SH the hosts' script (cut / mend a host's network)
  MAILLAB_MH_INVENTORY the scenario's inventory (the mailbox move playbook runs on it)
  MAILLAB_CA          the scenario's CA certificate
  MAILLAB_PREFIX      container name prefix
"""

from __future__ import annotations

import imaplib
import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid

import pytest

from mailclient import compose

pytestmark = pytest.mark.multihost

USERS = ['user1@example.com', 'user2@example.com']


def _pairs(name):
    # Empty outside the multihost scenario, whose verify step sets them (the
    # module is collected, and its tests deselected, in every scenario).
    return dict(item.split('=', 1) for item in os.environ.get(name, '').split(',') if '=' in item)


MX = _pairs('MAILLAB_MH_MX')                  # host -> address
STORES = _pairs('MAILLAB_MH_STORES')          # store name -> host
DB_HOSTS = [host for host in os.environ.get('MAILLAB_MH_DB', '').split(',') if host]
PREFIX = os.environ.get('MAILLAB_PREFIX', 'mh-')
HOSTS_SH = os.environ.get('MAILLAB_MH_HOSTS_SH', '')
INVENTORY = os.environ.get('MAILLAB_MH_INVENTORY', '')
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def docker(host, *args, timeout=120, check=True):
    """docker against a test host's own engine."""
    run = subprocess.run(['docker', '-H', 'unix:///run/maillab-mh/%s/docker.sock' % host, *args],
                         capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError('docker %s on %s: %s' % (' '.join(args), host, run.stderr.strip()))
    return run


def sql(query, hosts=None):
    """A query as root over a database node's socket: the first of hosts (by
    default every node) that takes it, as the balancers do."""
    errors = []
    for host in hosts or DB_HOSTS:
        run = docker(host, 'exec', PREFIX + 'mail-db', 'mariadb', '-N', '-B', 'postfixadmin', '-e', query, check=False)
        if run.returncode == 0:
            return run.stdout
        errors.append('%s: %s' % (host, run.stderr.strip()))
    raise AssertionError('no database node took %r: %s' % (query, '; '.join(errors)))


def store_name_of(user):
    """The name of the store holding a mailbox, from the database."""
    name = sql("SELECT store FROM maillab_mailbox_store WHERE username = '%s'" % user).strip()
    assert name in STORES, 'mailbox %s has no store (%r)' % (user, name)
    return name


def store_of(user):
    """The store host of a mailbox."""
    return STORES[store_name_of(user)]


def count_on(store_host, user, subject):
    """How many messages of that subject the user's INBOX holds on that store."""
    run = docker(store_host, 'exec', PREFIX + 'mail-imap', 'doveadm', 'search', '-u', user,
                 'mailbox', 'INBOX', 'header', 'Subject', subject, check=False)
    if run.returncode != 0:
        return 0
    return len(run.stdout.splitlines())


def send_as_mta(rcpt, subject, mx_order, deadline=180):
    """Deliver one message the way an MTA does: each MX in turn (a refused or
    timed-out connection, or a 4xx, moves on to the next), the whole list
    again after a pause, until one accepts. Returns the MX that took it."""
    end = time.monotonic() + deadline
    while True:
        for host in mx_order:
            try:
                with smtplib.SMTP(MX[host], 25, timeout=15) as smtp:
                    smtp.ehlo('mta.example.org')
                    smtp.sendmail('sender@example.org', [rcpt], compose('sender@example.org', rcpt, subject, 'multihost'))
                return host
            except (OSError, smtplib.SMTPException):
                continue
        if time.monotonic() > end:
            raise AssertionError('no MX host accepted %s for %s within %d s' % (subject, rcpt, deadline))
        time.sleep(2)


def flush_queues():
    for host in MX:
        docker(host, 'exec', PREFIX + 'mail-smtp', 'postqueue', '-f', check=False)


def wait_counts(expected, timeout=120):
    """expected: {(user, subject): count}; polls the stores until every count
    is reached on the user's store (and none is beyond it), flushing the MX
    queues now and then. Returns the counts seen."""
    end = time.monotonic() + timeout
    last_flush = 0.0
    while True:
        seen = {key: count_on(store_of(key[0]), *key) for key in expected}
        if seen == expected or any(seen[key] > expected[key] for key in expected) or time.monotonic() > end:
            return seen
        if time.monotonic() - last_flush > 10:
            flush_queues()
            last_flush = time.monotonic()
        time.sleep(1)


class _ProxyIMAP(imaplib.IMAP4_SSL):
    """IMAPS to an address, the certificate checked for the mail host's name."""

    def __init__(self, address, context):
        self._address = address
        super().__init__('mail.example.com', 993, ssl_context=context, timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self._address, self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


@pytest.fixture(scope='module')
def tls():
    return ssl.create_default_context(cafile=os.environ['MAILLAB_CA'])


def imap_count(address, tls, user, subject):
    imap = _ProxyIMAP(address, tls)
    try:
        imap.login(user, 'password')
        imap.select('INBOX', readonly=True)
        _typ, data = imap.search(None, 'SUBJECT', '"%s"' % subject)
        return len(data[0].split())
    finally:
        imap.logout()


class Cut:
    """A test host off the network (hosts.sh cut), back on at the end."""

    def __init__(self, host):
        self.host = host

    def __enter__(self):
        subprocess.run([HOSTS_SH, 'cut', self.host], check=True, capture_output=True)
        return self

    def __exit__(self, *exc):
        subprocess.run([HOSTS_SH, 'mend', self.host], check=True, capture_output=True)


def test_the_stores_hold_the_mailboxes_by_the_rule():
    """The two lab mailboxes went to the two stores (fewest mailboxes first)."""
    assert sorted(store_of(user) for user in USERS) == sorted(STORES.values())


def test_mail_to_each_mx_for_users_on_each_store_arrives_once_and_reads_through_each_proxy(tls):
    tag = uuid.uuid4().hex[:8]
    expected = {}
    for mx in MX:
        for user in USERS:
            subject = 'mh %s via %s' % (tag, mx)
            assert send_as_mta(user, subject, [mx], deadline=30) == mx
            expected[(user, subject)] = 1
    assert wait_counts(expected) == expected
    for user in USERS:
        others = [host for host in STORES.values() if host != store_of(user)]
        for subject in {s for (u, s) in expected if u == user}:
            assert all(count_on(host, user, subject) == 0 for host in others), 'a copy on another store'
            for address in MX.values():
                assert imap_count(address, tls, user, subject) == 1, (address, user, subject)


def _traffic(subjects, accepted, errors, mx_order, stop_after):
    for i, subject in enumerate(subjects):
        try:
            accepted.append((USERS[i % 2], subject, send_as_mta(USERS[i % 2], subject, mx_order)))
        except AssertionError as exc:
            errors.append(str(exc))
        time.sleep(0.5)
        if i + 1 == stop_after:
            return


def test_mail_survives_an_mx_host_down(tls):
    """The first MX host (also a database node) goes off the network under
    steady traffic: senders move on to the second MX; nothing is lost or
    doubled, and the host's database node catches up when it is back."""
    first, second = list(MX)
    tag = uuid.uuid4().hex[:8]
    subjects = ['mh %s down %02d' % (tag, i) for i in range(24)]
    accepted, errors = [], []
    sender = threading.Thread(target=_traffic, args=(subjects, accepted, errors, [first, second], len(subjects)))
    sender.start()
    while len(accepted) < 6 and sender.is_alive():
        time.sleep(0.2)
    with Cut(first):
        while len(accepted) < 18 and sender.is_alive():
            time.sleep(0.2)
        during = [mx for (_u, _s, mx) in accepted[6:]]
    sender.join(timeout=300)
    assert not errors, errors
    assert len(accepted) == len(subjects)
    assert second in during and first not in during[1:], during
    expected = {(user, subject): 1 for (user, subject, _mx) in accepted}
    assert wait_counts(expected, timeout=180) == expected
    if first in DB_HOSTS:
        _wait_synced(first)


def _wait_synced(host, timeout=120):
    end = time.monotonic() + timeout
    while True:
        run = docker(host, 'exec', PREFIX + 'mail-db', 'mariadb', '-N', '-B', '-e',
                     "SHOW STATUS WHERE Variable_name IN ('wsrep_local_state_comment', 'wsrep_cluster_size')",
                     check=False)
        status = dict(line.split('\t') for line in run.stdout.splitlines() if '\t' in line)
        if status.get('wsrep_local_state_comment') == 'Synced' and status.get('wsrep_cluster_size') == str(len(DB_HOSTS)):
            return
        assert time.monotonic() < end, 'database node on %s not back in the cluster: %s' % (host, status or run.stderr)
        time.sleep(2)


def test_a_store_down_queues_its_users_mail_and_spares_the_others():
    user_down = USERS[1]
    host_down = store_of(user_down)
    user_up = next(user for user in USERS if store_of(user) != host_down)
    assert host_down not in MX and host_down not in DB_HOSTS, 'the test cuts a store-only host'
    tag = uuid.uuid4().hex[:8]
    down_subjects = ['mh %s queued %d' % (tag, i) for i in range(4)]
    up_subjects = ['mh %s spared %d' % (tag, i) for i in range(4)]
    with Cut(host_down):
        for i, (down, up) in enumerate(zip(down_subjects, up_subjects)):
            mx = list(MX)[i % len(MX)]
            assert send_as_mta(user_down, down, [mx], deadline=60) == mx
            assert send_as_mta(user_up, up, [mx], deadline=60) == mx
        expected_up = {(user_up, subject): 1 for subject in up_subjects}
        assert wait_counts(expected_up, timeout=60) == expected_up
        queued = ''.join(docker(mx, 'exec', PREFIX + 'mail-smtp', 'postqueue', '-j').stdout for mx in MX)
        assert queued.count(user_down) >= len(down_subjects), queued
    expected_down = {(user_down, subject): 1 for subject in down_subjects}
    assert wait_counts(expected_down, timeout=180) == expected_down


class NodeDown:
    """The database node of host stopped (docker stop), started again at the end."""

    def __init__(self, host):
        self.host = host

    def __enter__(self):
        docker(self.host, 'stop', PREFIX + 'mail-db')
        return self

    def __exit__(self, *exc):
        docker(self.host, 'start', PREFIX + 'mail-db')


def test_a_database_node_down_leaves_mail_working_and_catches_up():
    """A Galera node stopped: a new alias written meanwhile on another node is
    used by both MX hosts at once, mail to it and to a mailbox arrives; the
    node, started again, holds the alias."""
    node = DB_HOSTS[1]
    alias = 'mh-%s@example.com' % uuid.uuid4().hex[:8]
    try:
        with NodeDown(node):
            sql("INSERT INTO alias (address, goto, domain, created, modified, active) VALUES "
                        "('%s', '%s', 'example.com', NOW(), NOW(), 1)" % (alias, USERS[0]))
            tag = uuid.uuid4().hex[:8]
            expected = {}
            for mx in MX:
                for rcpt, user in ((USERS[1], USERS[1]), (alias, USERS[0])):
                    subject = 'mh %s db down via %s to %s' % (tag, mx, rcpt)
                    assert send_as_mta(rcpt, subject, [mx], deadline=60) == mx
                    expected[(user, subject)] = 1
            assert wait_counts(expected) == expected
        _wait_synced(node)
        assert alias in sql("SELECT address FROM alias WHERE address = '%s'" % alias, hosts=[node])
    finally:
        sql("DELETE FROM alias WHERE address = '%s'" % alias)


def test_the_first_database_node_down_leaves_logins_working(tls):
    """The node every balancer sends its connections to while it answers:
    logins through both proxies keep working while it is down."""
    with NodeDown(DB_HOSTS[0]):
        failures = []
        for _round in range(3):
            for address in MX.values():
                try:
                    imap_count(address, tls, USERS[1], 'none')
                except imaplib.IMAP4.error as exc:
                    failures.append((address, str(exc)))
        assert not failures, failures
    _wait_synced(DB_HOSTS[0])


@pytest.mark.parametrize('port', [24, 143, 4190, 12346])
def test_a_store_serves_the_mx_hosts_only(port):
    """A store's LMTP, IMAP and ManageSieve answer the MX hosts' proxies (the
    tests above deliver and log in through them), its doveadm port the other
    stores (the mailbox move copies through it), and nobody else: here this
    machine, another address of the hosts' network, gets no answer."""
    rows = sql('SELECT address FROM maillab_store WHERE active = 1').split()
    assert rows
    for address in rows:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=3).close()


def move_mailbox(user, store, check=True):
    """playbooks/mailbox_move.yml, as an operator runs it."""
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', INVENTORY,
                          os.path.join(ROOT, 'playbooks', 'mailbox_move.yml'),
                          '-e', 'mailbox=%s' % user, '-e', 'store=%s' % store],
                         capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, 'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
                              'ANSIBLE_NOCOLOR': '1'})
    if check:
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run


def _recap_changed(output):
    return sum(int(n) for n in re.findall(r'changed=(\d+)', output.split('PLAY RECAP')[-1]))


@pytest.mark.parametrize('args, message', [
    (('nobody@example.com', None), 'There is no mailbox nobody@example.com'),
    ((USERS[0], 'nowhere.example.com'), 'must be one of mailserver_stores'),
])
def test_a_mailbox_move_with_bad_input_names_the_cause(args, message):
    user, store = args
    run = move_mailbox(user, store or next(iter(STORES)), check=False)
    assert run.returncode != 0
    assert message in run.stdout, run.stdout[-3000:]


def test_a_mailbox_moves_to_another_store_under_traffic(tls):
    """playbooks/mailbox_move.yml moves a mailbox while mail for it arrives
    through both MX hosts and its user is logged in: afterwards every message
    is on the new store once, none is left on the old one, the open session
    was closed once and a new login (through either proxy) reads them all; a
    second run changes nothing. The mailbox is moved back at the end."""
    user = USERS[0]
    old_name = store_name_of(user)
    new_name = next(name for name in STORES if name != old_name)
    old_host, new_host = STORES[old_name], STORES[new_name]
    tag = uuid.uuid4().hex[:8]
    before = ['mh %s before move %d' % (tag, i) for i in range(3)]
    for i, subject in enumerate(before):
        send_as_mta(user, subject, [list(MX)[i % len(MX)]], deadline=30)
    assert wait_counts({(user, s): 1 for s in before}) == {(user, s): 1 for s in before}
    # A mail program logged in through a proxy, reading the INBOX.
    session = _ProxyIMAP(next(iter(MX.values())), tls)
    session.login(user, 'password')
    session.select('INBOX')
    subjects = ['mh %s moving %02d' % (tag, i) for i in range(20)]
    accepted, errors = [], []

    def traffic():
        for i, subject in enumerate(subjects):
            try:
                accepted.append(send_as_mta(user, subject, [list(MX)[i % len(MX)], list(MX)[(i + 1) % len(MX)]]))
            except AssertionError as exc:
                errors.append(str(exc))
            time.sleep(0.5)

    sender = threading.Thread(target=traffic)
    try:
        sender.start()
        while len(accepted) < 4 and sender.is_alive():
            time.sleep(0.2)
        run = move_mailbox(user, new_name)
        sender.join(timeout=300)
        assert not errors and len(accepted) == len(subjects), (errors, accepted)
        assert store_name_of(user) == new_name
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            session.noop()
            session.noop()
        expected = {(user, subject): 1 for subject in before + subjects}
        assert wait_counts(expected, timeout=180) == expected
        # Nothing left of it on the old store (looked at before any lookup
        # there makes its folders again).
        local, domain = user.split('@')
        left = docker(old_host, 'exec', PREFIX + 'mail-imap', 'ls', '-d', '/var/mail/%s/%s' % (domain, local), check=False)
        assert left.returncode != 0, 'the old store keeps a copy: %s' % left.stdout
        for address in MX.values():
            imap = _ProxyIMAP(address, tls)
            try:
                imap.login(user, 'password')
                imap.select('INBOX', readonly=True)
                _typ, data = imap.search(None, 'SUBJECT', '"mh %s"' % tag)
                assert len(data[0].split()) == len(before) + len(subjects), address
            finally:
                imap.logout()
        again = move_mailbox(user, new_name)
        assert _recap_changed(again.stdout) == 0, again.stdout[-3000:]
        assert _recap_changed(run.stdout) > 0
    finally:
        if store_name_of(user) != old_name:
            move_mailbox(user, old_name)
    assert store_of(user) == old_host
    assert count_on(old_host, user, before[0]) == 1 and count_on(new_host, user, before[0]) == 0
