#!/usr/bin/env python3
"""tests/lib/qmp.py - a QEMU monitor client for the tests and benches (vm.sh).

  qmp.py call SOCK CMD [JSON-ARGS]
      print the return value of CMD as JSON; exit 1 with QEMU's error
  qmp.py write SOCK DEVICE DISK_BYTES IO_BYTES COUNT RATE SEED [SRC]
      COUNT random writes of IO_BYTES (aligned to it) anywhere on the disk,
      through the guest's device DEVICE (HMP qemu-io -d, so a fleecing view's
      copy-before-write filter sees them as it sees the guest's), paced to RATE
      bytes/s (0: as fast as QEMU takes them); COUNT 0: until killed.  Each
      write's data: a one-byte pattern, or with SRC the first IO_BYTES of
      that file (random data: as incompressible as a guest's).  Prints
      "N writes, B bytes in S s" at the end.
  qmp.py agent SOCK LOG
      a stand-in for qemu-guest-agent on the unix socket SOCK (the test
      guests run none): answers guest-sync, guest-fsfreeze-freeze and -thaw
      (as if one filesystem froze), appending each command's name to LOG.
"""
import json
import random
import signal
import socket
import sys
import time


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile('rw')
        self._read()
        self.call('qmp_capabilities')

    def _read(self):
        while True:
            o = json.loads(self.f.readline())
            if 'event' not in o:
                return o

    def call(self, cmd, args=None):
        self.f.write(json.dumps({'execute': cmd, 'arguments': args or {}}) + '\n')
        self.f.flush()
        o = self._read()
        if 'error' in o:
            sys.exit('QMP %s: %s' % (cmd, o['error']['desc']))
        return o['return']

    def hmp(self, line):
        out = self.call('human-monitor-command', {'command-line': line})
        if out.strip():
            sys.exit('HMP %s: %s' % (line, out.strip()))


def write(q, dev, disk, io, count, rate, seed, src=None):
    rnd = random.Random(seed)
    slots = disk // io
    n = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    t0 = time.monotonic()
    while not stop and (count == 0 or n < count):
        off = rnd.randrange(slots) * io
        data = '-s %s' % src if src else '-P %d' % (1 + n % 255)
        q.hmp('qemu-io -d %s "write -q %s %d %d"' % (dev, data, off, io))
        n += 1
        if rate:
            ahead = t0 + n * io / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    took = time.monotonic() - t0
    print('%d writes, %d bytes in %.1f s' % (n, n * io, took))


def agent(path, log):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)
    while True:
        c, _ = srv.accept()
        buf, dec = '', json.JSONDecoder()
        while True:
            data = c.recv(65536)
            if not data:
                break
            buf += data.decode()
            while buf.strip():
                try:
                    o, end = dec.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[end:]
                cmd = o.get('execute', '')
                with open(log, 'a') as f:
                    f.write(cmd + '\n')
                ret = o.get('arguments', {}).get('id') if cmd == 'guest-sync' else 1
                reply = {'return': ret}
                if 'id' in o:
                    reply['id'] = o['id']
                c.sendall((json.dumps(reply) + '\n').encode())
        c.close()


def main(a):
    if len(a) >= 3 and a[0] == 'call':
        print(json.dumps(Qmp(a[1]).call(a[2], json.loads(a[3]) if len(a) > 3 else {})))
    elif len(a) == 3 and a[0] == 'agent':
        agent(a[1], a[2])
    elif len(a) in (8, 9) and a[0] == 'write':
        write(Qmp(a[1]), a[2], *[int(x) for x in a[3:8]], *a[8:])
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv[1:])
