#!/usr/bin/env python3
"""Where a commit's round trip goes in `synchronous: remote` (tests/bench/pg.sh
PG_TRACE=DIR): reads DIR/strace (strace -f -y -ttt -T of basculed, its
children and `bascule recv`), DIR/pids (PID and command line of each traced
process), DIR/schedstat.0 and .1 and DIR/flush_lag, and prints

  - per process: its share of time on a CPU, waiting for one, asleep
  - per process role: system calls counted, and the time in fsync/fdatasync
  - the round trip of WAL, hop by hop: from pgstream handing WAL to
    basculed, through the relay and recv (its fsyncs, its ACK), back to
    pgstream's standby status update; for each hop the time from the
    previous one, median and p90 over every round seen.

Usage: tests/bench/pgtrace.py DIR"""
import re
import statistics
import sys

LINE = re.compile(r'^(\d+)\s+(\d+\.\d+)\s+(.*)$')
CALL = re.compile(r'^(\w+)\((.*)$')
DUR = re.compile(r'<(\d+\.\d+)>\s*$')
RET = re.compile(r'\)\s+=\s+(-?\d+|\?)')
FD = re.compile(r'^(\d+)<([^>]*)>')


def role_of(cmd):
    if 'basculed' in cmd:
        return 'basculed'
    for r in ('pgstream', 'relay', 'recv'):
        if ' ' + r in cmd:
            return r
    return 'other'


def parse(path):
    """Events (ts, tid, call, fd, fdpath, ret, dur), unfinished calls joined
    with their resumption, clone results as (parent, child)."""
    pending, events, clones = {}, [], []
    with open(path, errors='replace') as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            tid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            if rest.endswith('<unfinished ...>'):
                pending[tid] = (ts, rest[:-len('<unfinished ...>')])
                continue
            if rest.startswith('<... '):
                if tid not in pending:
                    continue
                ts, head = pending.pop(tid)
                rest = head + rest[rest.index('resumed>') + len('resumed>'):]
            c = CALL.match(rest)
            if not c:
                continue
            call, args = c.group(1), c.group(2)
            d = DUR.search(rest)
            r = RET.search(rest)
            ret = int(r.group(1)) if r and r.group(1) != '?' else None
            fm = FD.match(args)
            fd, fdpath = (int(fm.group(1)), fm.group(2)) if fm else (None, '')
            events.append((ts, tid, call, fd, fdpath, ret, float(d.group(1)) if d else 0.0))
            if call in ('clone', 'clone3', 'fork', 'vfork') and ret and ret > 0:
                clones.append((tid, ret))
    events.sort()
    return events, clones


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float('nan')


def ms(x):
    return '%.2f' % (x * 1000)


def sched(d, roles):
    """Each process's share of the schedstat window (no tracer): on a CPU,
    runnable but waiting for one, and the rest (asleep: waiting for input
    or for the disk)."""
    try:
        snaps = []
        for k in (0, 1):
            with open('%s/schedstat.%d' % (d, k)) as f:
                lines = f.read().split('\n')
            snaps.append((float(lines[0]), {int(x.split()[0]): (float(x.split()[1]), float(x.split()[2]),
                                                                int(x.split()[3]) if len(x.split()) > 3 else 1)
                                            for x in lines[1:] if x.strip()}))
    except (OSError, ValueError, IndexError):
        return
    span = snaps[1][0] - snaps[0][0]
    print('schedstat, %.1f s without a tracer: %% of the time on a CPU, waiting for one, asleep'
          ' (a process of several threads: their sums, no "asleep")' % span)
    for pid, (run1, wait1, n) in sorted(snaps[1][1].items()):
        run0, wait0, _ = snaps[0][1].get(pid, (0, 0, 1))
        run, wait = (run1 - run0) / 1e9 / span, (wait1 - wait0) / 1e9 / span
        asleep = '%5.1f %%' % (100 * max(0.0, 1 - run - wait)) if n == 1 else '(%d threads)' % n
        print('  %-9s %6d  %5.1f %%  %5.1f %%  %s' % (roles.get(pid, '?'), pid, 100 * run, 100 * wait, asleep))
    print()


def main(d):
    roles = {}
    with open(d + '/pids') as f:
        for line in f:
            parts = line.split(None, 1)
            if parts:
                roles[int(parts[0])] = role_of(parts[1] if len(parts) > 1 else '')
    sched(d, roles)
    events, clones = parse(d + '/strace')
    for parent, child in clones:  # threads and children: their parent's role
        if child not in roles and parent in roles:
            roles[child] = roles[parent]
    role = lambda tid: roles.get(tid, 'thread?')
    if not events:
        sys.exit('no system calls in %s/strace' % d)
    span = events[-1][0] - events[0][0]
    print('trace of %.2f s, %d system calls' % (span, len(events)))

    print('\nper role: calls; fsync+fdatasync count, median, p90, total (ms)')
    for r in sorted(set(role(e[1]) for e in events)):
        ev = [e for e in events if role(e[1]) == r]
        syncs = [e[6] for e in ev if e[2] in ('fsync', 'fdatasync')]
        top = {}
        for e in ev:
            top[e[2]] = top.get(e[2], 0) + 1
        common = ', '.join('%s %d' % kv for kv in sorted(top.items(), key=lambda kv: -kv[1])[:6])
        print('  %-9s %6d (%s)' % (r, len(ev), common))
        if syncs:
            print('  %-9s syncs %d, %s, %s, %s' % ('', len(syncs), ms(statistics.median(syncs)),
                                                  ms(pct(syncs, 90)), ms(sum(syncs))))

    # The pipes between basculed and its children, from the children's
    # stdin (fd 0) and stdout (fd 1).
    def pipe(r, fd):
        for e in events:
            if role(e[1]) == r and e[3] == fd and e[4].startswith('pipe:'):
                return e[4]
        return None
    pg_out, pg_in, rl_in, rl_out = pipe('pgstream', 1), pipe('pgstream', 0), pipe('relay', 0), pipe('relay', 1)
    got = lambda e: e[5] is not None and e[5] > 0
    is_sock = lambda e: e[4].startswith(('TCP', 'UNIX', 'socket'))
    hops = [
        ('pgstream hands WAL to basculed', lambda e: role(e[1]) == 'pgstream' and e[2] == 'write' and e[4] == pg_out and got(e)),
        ('basculed reads it', lambda e: role(e[1]) == 'basculed' and e[2] == 'read' and e[4] == pg_out and got(e)),
        ('basculed sends the epoch to the relay', lambda e: role(e[1]) == 'basculed' and e[2] in ('write', 'writev') and e[4] == rl_in and got(e)),
        ('the relay reads it', lambda e: role(e[1]) == 'relay' and e[2] == 'read' and e[4] == rl_in and got(e)),
        ('the relay sends it to ssh', lambda e: role(e[1]) == 'relay' and e[2] in ('sendto', 'write') and is_sock(e) and got(e)),
        ('recv reads it', lambda e: role(e[1]) == 'recv' and e[2] == 'read' and e[3] == 0 and got(e)),
        ('recv starts its fsyncs', lambda e: role(e[1]) == 'recv' and e[2] in ('fsync', 'fdatasync')),
        ('recv writes the ACK', lambda e: role(e[1]) == 'recv' and e[2] == 'write' and e[3] == 1 and got(e)),
        ('the relay receives it', lambda e: role(e[1]) == 'relay' and e[2] in ('recvfrom', 'read') and is_sock(e) and got(e)),
        ('the relay hands it to basculed', lambda e: role(e[1]) == 'relay' and e[2] == 'write' and e[4] == rl_out and got(e)),
        ('basculed reads the ACK', lambda e: role(e[1]) == 'basculed' and e[2] == 'read' and e[4] == rl_out and got(e)),
        ('basculed sends FLUSHED to pgstream', lambda e: role(e[1]) == 'basculed' and e[2] in ('write', 'writev') and e[4] == pg_in and got(e)),
        ('pgstream reads it', lambda e: role(e[1]) == 'pgstream' and e[2] == 'read' and e[3] == 0 and got(e)),
        ('pgstream sends the status update', lambda e: role(e[1]) == 'pgstream' and e[2] == 'sendto' and is_sock(e) and got(e)),
    ]
    if None in (pg_out, pg_in, rl_in, rl_out):
        print('\n(no pipes of pgstream and the relay in the trace: no round trip)')
        return
    # Each round: from one WAL handed over, the first event of each hop
    # after the previous one (a call's end for the fsyncs' start: its start).
    idx = [[i for i, e in enumerate(events) if h[1](e)] for h in hops]
    rounds, seen = [], set()
    for start in idx[0]:
        t, chain, ok = events[start][0], [events[start][0]], True
        for k in range(1, len(hops)):
            nxt = next((events[i][0] for i in idx[k] if events[i][0] > t), None)
            if nxt is None:
                ok = False
                break
            chain.append(nxt)
            t = nxt
        if ok and chain[1] not in seen:  # one round per read of basculed
            seen.add(chain[1])
            rounds.append(chain)
    print('\nround trip of WAL, %d rounds: each hop after the previous, median (p90) ms' % len(rounds))
    for k, h in enumerate(hops[1:], 1):
        xs = [c[k] - c[k - 1] for c in rounds]
        print('  %-40s %7s (%s)' % (h[0], ms(statistics.median(xs)), ms(pct(xs, 90))))
    tot = [c[-1] - c[0] for c in rounds]
    if tot:
        print('  %-40s %7s (%s)' % ('total', ms(statistics.median(tot)), ms(pct(tot, 90))))
    try:
        lag = [float(x) for x in open(d + '/flush_lag').read().split()]
        if lag:
            print('\nflush_lag (pg_stat_replication) %d samples: median %s ms, max %s ms' %
                  (len(lag), ms(statistics.median(lag)), ms(max(lag))))
    except OSError:
        pass


if __name__ == '__main__':
    if len(sys.argv) != 2 or sys.argv[1] in ('-h', '--help'):
        print(__doc__)
        sys.exit(0 if len(sys.argv) == 2 else 2)
    main(sys.argv[1])
