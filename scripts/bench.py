#!/usr/bin/env python3
"""make bench: throughput, latency, provisioning time and footprint of a level,
side by side with the machine's own ceiling, in one run.

1. Ceiling: Postfix's smtp-source against smtp-sink in a throwaway container
   of the project's Postfix image, behind a published 127.0.0.1 port.
2. End to end: the same smtp-source against the deployed level's published
   SMTP port, N tagged messages over K sessions; time until all are accepted
   and all are visible over IMAP; accept-to-visible latency percentiles from
   Postfix's own delivery delays; lost and duplicated counts (must be 0). A
   sweep over session counts shows where it saturates.
3. Provisioning: warm (nothing changed, changed=0) and cold (service images
   removed, volumes kept) seconds of the level's playbook.
4. Footprint: image sizes; idle and under-load memory per container.

Only 127.0.0.1 and the project's own containers are contacted; every wait is
bounded. Exit status 1 when a message is lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The integration tests' mail clients (a plain module, no pytest needed).
sys.path.insert(0, str(ROOT / 'tests' / 'integration'))
import mailclient  # noqa: E402
from mailclient import HOST  # noqa: E402


def log(msg, end='\n'):
    print(msg, end=end, file=sys.stderr, flush=True)


def docker(*args, check=True, timeout=600):
    run = subprocess.run(['docker', *args], capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise SystemExit('bench: docker %s failed: %s' % (' '.join(args[:3]), run.stderr.strip()[-400:]))
    return run


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    if not mailclient.greets(port, timeout, interval=0.2):
        raise SystemExit('bench: nothing answers SMTP on %s:%d after %d s' % (HOST, port, timeout))


class Stack:
    def __init__(self, args):
        self.args = args
        self.smtp = args.prefix + 'mail-smtp'
        self.imap = args.prefix + 'mail-imap'
        inspect = docker('inspect', '-f', '{{.Config.Image}}', self.smtp, check=False)
        if inspect.returncode != 0:
            raise SystemExit('bench: container %s is not there: run `make up LEVEL=%s` first' % (self.smtp, args.level))
        self.image = inspect.stdout.strip()

    def containers(self):
        out = docker('ps', '--filter', 'label=org.maillab.stack=' + (self.args.prefix or 'default'),
                     '--format', '{{.Names}}').stdout.split()
        return sorted(out)


def smtp_source(image, port, count, sessions, size, rcpt, subject, timeout):
    """Run smtp-source from a container on the host network; returns seconds."""
    cmd = ['run', '--rm', '--network', 'host', '--entrypoint', 'smtp-source', image,
           '-s', str(sessions), '-m', str(count), '-l', str(size), '-M', 'bench.maillab.invalid',
           '-f', 'bench@example.com', '-t', rcpt, '-S', subject, '%s:%d' % (HOST, port)]
    start = time.monotonic()
    run = docker(*cmd, check=False, timeout=timeout)
    took = time.monotonic() - start
    if run.returncode != 0:
        raise SystemExit('bench: smtp-source to port %d failed (%s): %s' % (
            port, run.returncode, (run.stdout + run.stderr).strip()[-400:]))
    return took


def smtp_source_startup(image):
    """Seconds a no-op container run costs, subtracted from smtp-source timings."""
    start = time.monotonic()
    docker('run', '--rm', '--network', 'host', '--entrypoint', 'true', image)
    return time.monotonic() - start


def ceiling(stack, count, sessions, size, overhead):
    port = free_port()
    name = 'maillab-bench-sink-%s' % uuid.uuid4().hex[:8]
    docker('run', '-d', '--rm', '--name', name, '-p', '%s:%d:25' % (HOST, port), '--entrypoint', 'smtp-sink',
           '--label', 'org.maillab.bench=sink', stack.image, '-u', 'nobody', '-c', '0.0.0.0:25', '1000')
    try:
        wait_port(port)
        took = smtp_source(stack.image, port, count, sessions, size, 'sink@example.com', 'ceiling', 600)
    finally:
        docker('rm', '-f', '-v', name, check=False)
    return count / max(took - overhead, 1e-3)


class MemorySampler(threading.Thread):
    def __init__(self, names):
        super().__init__(daemon=True)
        self.names, self.peak, self.stop = names, {}, threading.Event()

    def run(self):
        while not self.stop.is_set():
            for name, mem in memory(self.names).items():
                self.peak[name] = max(self.peak.get(name, 0), mem)
            self.stop.wait(1)


def memory(names):
    if not names:
        return {}
    out = docker('stats', '--no-stream', '--format', '{{.Name}} {{.MemUsage}}', *names, check=False).stdout
    result = {}
    for line in out.splitlines():
        name, usage = line.split(' ', 1)
        result[name] = _mib(usage.split('/')[0].strip())
    return result


def _mib(text):
    match = re.match(r'([\d.]+)\s*([KMG]i?B|B)', text)
    if not match:
        return 0.0
    value, unit = float(match.group(1)), match.group(2)
    return value * {'B': 1 / 2**20, 'KiB': 1 / 1024, 'KB': 1 / 1024, 'MiB': 1, 'MB': 1,
                    'GiB': 1024, 'GB': 1024}[unit]


def imap_open(port, user, password, timeout=60):
    """Log in over IMAP; from level 3 on (LOGINDISABLED) after STARTTLS. The
    bench only talks to 127.0.0.1, to the stack's own lab certificate."""
    return mailclient.imap_login(port, user, password, timeout=timeout, starttls=ssl._create_unverified_context())


# Delivered mail lands in INBOX, or in Junk when Rspamd marks it (full stack).
MAILBOXES = ('INBOX', 'Junk')


def imap_messages(port, user, password):
    """How many messages user's INBOX and Junk hold now."""
    imap = imap_open(port, user, password, timeout=30)
    try:
        return _status_messages(imap)
    finally:
        imap.logout()


def _status_messages(imap):
    total = 0
    for mailbox in MAILBOXES:
        typ, data = imap.status(mailbox, '(MESSAGES)')
        match = re.search(rb'MESSAGES (\d+)', data[0] or b'') if typ == 'OK' else None
        total += int(match.group(1)) if match else 0
    return total


def imap_count(port, user, password, subject, timeout, want, before):
    """Wait until INBOX and Junk hold `want` more messages than `before`
    (cheap STATUS polls, so the bench does not steal CPU from delivery), then
    count the run's messages and their distinct Message-IDs, and delete them.
    Returns (visible count, distinct Message-IDs, seconds waited)."""
    start = time.monotonic()
    deadline = start + timeout
    imap = imap_open(port, user, password)
    try:
        while _status_messages(imap) < before + want and time.monotonic() < deadline:
            time.sleep(0.1)
        waited = time.monotonic() - start
        seen, ids = 0, set()
        for mailbox in MAILBOXES:
            if imap.select(mailbox)[0] != 'OK':
                continue
            typ, data = imap.uid('SEARCH', 'SUBJECT', '"%s"' % subject)
            uids = data[0].split() if typ == 'OK' and data[0] else []
            seen += len(uids)
            for i in range(0, len(uids), 500):
                typ, data = imap.uid('FETCH', b','.join(uids[i:i + 500]), '(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')
                for item in data:
                    if isinstance(item, tuple):
                        ids.add(item[1].strip().lower())
            for i in range(0, len(uids), 500):
                imap.uid('STORE', b','.join(uids[i:i + 500]), '+FLAGS.SILENT', r'(\Deleted)')
            if uids:
                imap.expunge()
        return seen, len(ids), waited
    finally:
        try:
            imap.logout()
        except Exception:
            pass


def delivery_delays(container, since, rcpt):
    """Postfix's delay= of each delivery to rcpt logged since `since` (arrival to Maildir)."""
    out = docker('logs', '--since', since, container, check=False)
    text = out.stdout + out.stderr
    delays = [float(m.group(1)) for m in re.finditer(
        r'to=<%s>.*? delay=([\d.]+),.*status=sent' % re.escape(rcpt), text)]
    return delays


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


def end_to_end(stack, args, sessions, count, overhead):
    if not args.imap_port:
        raise SystemExit('bench: the IMAP port is unknown (level 1 has no IMAP); use LEVEL=2 or higher')
    subject = 'bench-%s-s%d' % (uuid.uuid4().hex[:10], sessions)
    since = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(time.time() - 1))
    before = imap_messages(args.imap_port, args.rcpt, args.password)
    sampler = MemorySampler(stack.containers())
    sampler.start()
    start = time.monotonic()
    took = smtp_source(stack.image, args.smtp_port, count, sessions, args.size, args.rcpt, subject, 1200)
    accepted = time.monotonic()
    seen, distinct, _ = imap_count(args.imap_port, args.rcpt, args.password, subject, args.timeout, count, before)
    visible = time.monotonic()
    sampler.stop.set()
    sampler.join()
    delays = delivery_delays(stack.smtp, since, args.rcpt)
    send_secs = max(took - overhead, 1e-3)
    return {
        'sessions': sessions, 'messages': count,
        'accept_seconds': round(send_secs, 3),
        'visible_seconds': round(visible - start - overhead, 3),
        'accept_msg_per_s': round(count / send_secs, 1),
        'visible_msg_per_s': round(count / max(visible - start - overhead, 1e-3), 1),
        'lost': max(0, count - distinct), 'duplicated': seen - distinct,
        'latency_p50': pct(delays, 50), 'latency_p95': pct(delays, 95), 'latency_p99': pct(delays, 99),
        'latency_samples': len(delays),
        'memory_peak_mib': {k: round(v, 1) for k, v in sampler.peak.items()},
        'accept_to_imap_tail_seconds': round(visible - accepted, 3),
    }


def playbook_seconds(level, extra=()):
    name = 'challenge' if level == 'challenge' else 'level%s' % level
    start = time.monotonic()
    run = subprocess.run([str(ROOT / '.venv/bin/ansible-playbook'), 'playbooks/%s.yml' % name, *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=1800,
                         env={**os.environ, 'ANSIBLE_CONFIG': str(ROOT / 'ansible.cfg')})
    took = time.monotonic() - start
    if run.returncode != 0:
        raise SystemExit('bench: playbook %s failed:\n%s' % (name, run.stdout[-2000:]))
    changed = [int(m) for m in re.findall(r'changed=(\d+)', run.stdout)]
    return round(took, 1), sum(changed)


def footprint(stack):
    images = {}
    for name in [docker('inspect', '-f', '{{.Config.Image}}', c).stdout.strip() for c in stack.containers()]:
        images[name] = round(int(docker('image', 'inspect', '-f', '{{.Size}}', name).stdout) / 1e6, 1)
    base = docker('image', 'inspect', '-f', '{{.Size}}', stack.args.base_image, check=False)
    if base.returncode == 0:
        images[stack.args.base_image] = round(int(base.stdout) / 1e6, 1)
    return images


def table(rows, headers):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = '  '.join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, '  '.join('-' * w for w in widths)]
    out += ['  '.join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return '\n'.join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--level', default=os.environ.get('LEVEL', '2'))
    parser.add_argument('--prefix', default='')
    parser.add_argument('--smtp-port', type=int, default=2525)
    parser.add_argument('--imap-port', type=int, default=143)
    parser.add_argument('--messages', type=int, default=5000)
    parser.add_argument('--size', type=int, default=2048)
    parser.add_argument('--sessions', type=int, default=16)
    parser.add_argument('--sweep', default='1,4,16,32')
    parser.add_argument('--rcpt', default='user2@example.com')
    parser.add_argument('--password', default=os.environ.get('MAILLAB_BENCH_PASSWORD', 'password'))
    parser.add_argument('--timeout', type=float, default=300, help='seconds to wait for mail to be visible')
    parser.add_argument('--base-image', default='debian:stable-slim')
    parser.add_argument('--skip-provisioning', action='store_true')
    parser.add_argument('--skip-cold', action='store_true')
    parser.add_argument('--results', default=str(ROOT / 'results'))
    args = parser.parse_args(argv)
    if str(args.level) == '1':
        args.imap_port = 0

    stack = Stack(args)
    report = {'level': str(args.level), 'when': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
              'messages': args.messages, 'size': args.size, 'sessions': args.sessions}
    log('[1/5] footprint at idle ...')
    report['idle_memory_mib'] = {k: round(v, 1) for k, v in memory(stack.containers()).items()}
    overhead = smtp_source_startup(stack.image)
    report['client_startup_seconds'] = round(overhead, 2)

    log('[2/5] ceiling: smtp-sink behind a published port, %d x %d B over %d sessions ...'
        % (args.messages, args.size, args.sessions))
    report['ceiling_msg_per_s'] = round(ceiling(stack, args.messages, args.sessions, args.size, overhead), 1)

    sweep = sorted({int(s) for s in args.sweep.split(',') if s} | {args.sessions})
    report['sweep'] = []
    lost = 0
    if args.imap_port:
        for i, sessions in enumerate(sweep, 1):
            log('[3/5] end to end, %d sessions (%d/%d) ...' % (sessions, i, len(sweep)))
            row = end_to_end(stack, args, sessions, args.messages, overhead)
            report['sweep'].append(row)
            lost += row['lost'] + row['duplicated']
        main_row = next(r for r in report['sweep'] if r['sessions'] == args.sessions)
        report['end_to_end'] = main_row
        report['ratio_to_ceiling'] = round(main_row['visible_msg_per_s'] / report['ceiling_msg_per_s'], 3)
    if not args.skip_provisioning:
        log('[4/5] provisioning: warm run ...')
        report['warm_seconds'], report['warm_changed'] = playbook_seconds(args.level)
        if not args.skip_cold:
            log('[4/5] provisioning: cold run (service images removed, volumes kept) ...')
            for container in stack.containers():
                image = docker('inspect', '-f', '{{.Config.Image}}', container).stdout.strip()
                docker('rm', '-f', container)
                docker('rmi', '-f', image, check=False)
            report['cold_seconds'], _ = playbook_seconds(args.level)
    log('[5/5] footprint ...')
    report['image_mb'] = footprint(stack)

    Path(args.results).mkdir(parents=True, exist_ok=True)
    out = Path(args.results) / ('bench-level%s-%s.json' % (args.level, time.strftime('%Y%m%d-%H%M%S')))
    out.write_text(json.dumps(report, indent=2))

    print('\nmaillab.mailserver bench, level %s (%d x %d B, %d sessions)' % (
        args.level, args.messages, args.size, args.sessions))
    print('ceiling (smtp-sink via published port): %.0f msg/s' % report['ceiling_msg_per_s'])
    if report['sweep']:
        rows = [(r['sessions'], r['accept_msg_per_s'], r['visible_msg_per_s'],
                 '%.2f' % (r['visible_msg_per_s'] / report['ceiling_msg_per_s']),
                 r['latency_p50'], r['latency_p95'], r['latency_p99'], r['lost'], r['duplicated'])
                for r in report['sweep']]
        print(table(rows, ['sessions', 'accepted/s', 'visible/s', 'ratio', 'p50 s', 'p95 s', 'p99 s', 'lost', 'dup']))
    if 'warm_seconds' in report:
        print('provisioning: warm %.1f s (changed=%d)%s' % (
            report['warm_seconds'], report['warm_changed'],
            ', cold %.1f s' % report['cold_seconds'] if 'cold_seconds' in report else ''))
    print('images (MB): ' + ', '.join('%s %.1f' % kv for kv in sorted(report['image_mb'].items())))
    print('idle memory (MiB): ' + ', '.join('%s %.1f' % kv for kv in sorted(report['idle_memory_mib'].items()))
          + ' (total %.1f)' % sum(report['idle_memory_mib'].values()))
    if report.get('end_to_end'):
        print('peak memory under load (MiB): ' + ', '.join(
            '%s %.1f' % kv for kv in sorted(report['end_to_end']['memory_peak_mib'].items())))
    print('results: %s' % out)
    if lost:
        print('FAILED: %d messages lost or duplicated' % lost)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
