#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""auth.py WORKER SCENARIO - authenticated membership, with real udsm-worker nodes on loopback
and raw TCP clients that speak (parts of) the udsm wire format without holding the secret.

Scenarios:
  right-secret   the secret from the environment, from udsm_config.secret (--secret) and from
                 a private UDSM_SECRET_FILE all form a cluster; a group-readable file is refused
  wrong-secret   a joiner with another secret, without one, or with one where node 0 has none
                 gets UDSM_EAUTH and a clear message; node 0 logs the refusal, keeps waiting,
                 and then forms with the right joiner
  raw-hello      raw clients (a well-formed HELLO, an AUTH_HELLO without the secret flag, a
                 forged AUTH_CONFIRM) are never admitted, never receive anything but AUTH_PROOF
                 and AUTH_FAIL, and do not delay the real joiners
  strays         joiners arrive while many raw clients idle, send garbage, drip bytes, or stop
                 halfway through the handshake: the cluster forms within a bound with exactly
                 the real nodes
  flood          more idle strays than the gate has slots: they are evicted, the real joiners
                 still get in quickly
  fd-flood       node 0 may open 40 files and 60 idle strays come first: it drops the oldest
                 to accept the real joiners
  members        clients that hold the secret (the handshake reimplemented here from
                 docs/PROTOCOL.md with hashlib and hmac, which checks that description): one
                 is admitted and hangs up before the peer table (node 0 removes it; the real
                 joiners become nodes 1 and 2), one authenticates and then says nothing
Exit: 0 pass, 1 fail.
"""
import hashlib
import hmac
import os
import random
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

WORKER = sys.argv[1]
MAGIC, VERSION = 0x4D534455, 5
HELLO, AUTH_HELLO, AUTH_PROOF, AUTH_CONFIRM, AUTH_FAIL = 1, 6, 7, 8, 9
NODE_ANY = 0xFFFFFFFF
# Formation with strays must finish within this many seconds of the last joiner's start; a
# gate that served connections one at a time would need HANDSHAKE_MS (3 s) per stray.
BOUND = 10.0


def fail(msg):
    print('FAIL: ' + msg)
    sys.exit(1)


def msg(mtype, payload=b'', src=0):
    return struct.pack('<BBHIQQ', mtype, 0, src, len(payload), 0, 0) + payload


def hello_payload():
    addr = b'127.0.0.1:9'
    return struct.pack('<IIIIIQQI', MAGIC, VERSION, os.sysconf('SC_PAGESIZE'), NODE_ANY, 0, 0,
                       0, 0) + addr


def auth_hello_payload(flags):
    return struct.pack('<IIII', MAGIC, VERSION, flags, NODE_ANY) + os.urandom(32)


class Node:
    """One udsm-worker; its port arrives through a pipe (--port-fd)."""

    def __init__(self, args, env_extra=None, want_port=False, nofile=None):
        env = dict(os.environ)
        for k in ('UDSM_SECRET', 'UDSM_SECRET_FILE'):
            env.pop(k, None)
        env['UDSM_LOG_LEVEL'] = '6'
        env.update(env_extra or {})
        self.rfd = None
        pass_fds = ()
        if want_port:
            self.rfd, wfd = os.pipe()
            args = ['--port-fd', str(wfd)] + args
            pass_fds = (wfd,)
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) \
            if nofile else None
        self.log = tempfile.TemporaryFile(mode='w+')  # read while it runs: wait_for()
        self.p = subprocess.Popen([WORKER] + args, env=env, stdout=self.log,
                                  stderr=subprocess.STDOUT, pass_fds=pass_fds, text=True,
                                  preexec_fn=limit)
        if want_port:
            os.close(wfd)
        self.out = None

    def port(self):
        data = b''
        while not data.endswith(b'\n'):
            chunk = os.read(self.rfd, 64)
            if not chunk:
                fail('node 0 never reported its port:\n' + self.wait())
            data += chunk
        os.close(self.rfd)
        return int(data.decode().strip().rsplit(':', 1)[1])

    def wait(self, timeout=60):
        try:
            self.p.wait(timeout=timeout)
            extra = ''
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            extra = '\n[killed after %d s]' % timeout
        self.log.seek(0)
        self.out = self.log.read() + extra
        return self.out

    def wait_for(self, text, timeout=30):
        """Until the node has printed @text."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.log.seek(0)
            if text in self.log.read():
                return
            time.sleep(0.05)
        fail('node never printed %r' % text)

    @property
    def rc(self):
        return self.p.returncode


def first(nodes, env=None, extra=(), nofile=None):
    n = Node(['--nodes', str(nodes), '--pages', '32', '--open-timeout', '20000'] + list(extra)
             + ['crc'], env, want_port=True, nofile=nofile)
    return n, n.port()


def joiner(port, env=None, extra=()):
    return Node(['--join', '127.0.0.1:%d' % port, '--pages', '32'] + list(extra) + ['crc'], env)


def expect(node, rc, *texts, who='node'):
    out = node.wait()
    if node.rc != rc:
        fail('%s exited %s, want %d; its output:\n%s' % (who, node.rc, rc, out))
    for t in texts:
        if t not in out:
            fail('%s output lacks %r:\n%s' % (who, t, out))
    return out


class Raw:
    """A raw client: connects, then does what its @mode says, recording what it receives."""

    def __init__(self, port, mode):
        self.mode = mode
        self.s = socket.create_connection(('127.0.0.1', port))
        self.s.setblocking(False)
        self.got = b''
        self.closed = False
        self.step = 0
        if mode == 'hello':
            self.send(msg(HELLO, hello_payload(), src=0xFFFF))
        elif mode == 'garbage':
            self.send(bytes(random.getrandbits(8) for _ in range(random.randint(1, 600))))
        elif mode == 'nosecret':
            self.send(msg(AUTH_HELLO, auth_hello_payload(0)))
        elif mode in ('half', 'forge'):
            self.send(msg(AUTH_HELLO, auth_hello_payload(1)))
        elif mode == 'drip':
            self.drip = msg(AUTH_HELLO, auth_hello_payload(1))

    def send(self, b):
        try:
            self.s.sendall(b)
        except OSError:
            self.closed = True

    def poll(self):
        """Read what arrived; act on it. Called now and then by the scenario."""
        if self.mode == 'drip' and self.step < len(self.drip):
            self.send(self.drip[self.step:self.step + 1])
            self.step += 1
        try:
            while True:
                b = self.s.recv(65536)
                if not b:
                    self.closed = True
                    break
                self.got += b
        except BlockingIOError:
            pass
        except OSError:
            self.closed = True
        if self.mode == 'forge' and self.step == 0 and len(self.got) >= 24 + 68:
            self.send(msg(AUTH_CONFIRM, os.urandom(32)))
            self.step = 1

    def types(self):
        """Message types received (the stream is framed: 24-byte header, then payload)."""
        t, off = [], 0
        while off + 24 <= len(self.got):
            mtype, _, _, ln = struct.unpack_from('<BBHI', self.got, off)
            t.append(mtype)
            off += 24 + ln
        return t

    def check_not_admitted(self):
        bad = [x for x in self.types() if x not in (AUTH_PROOF, AUTH_FAIL)]
        if bad:
            fail('a raw client (%s) without the secret received message types %s' %
                 (self.mode, bad))

    def close(self):
        self.s.close()


def derive(secret):
    """The keys of docs/PROTOCOL.md: BLAKE2b master key, then libsodium KDF subkeys 1 and 2."""
    master = hashlib.blake2b(secret, digest_size=32, person=b'udsm-secret-v2').digest()
    sub = lambda i, n: hashlib.blake2b(b'', digest_size=n, key=master,
                                       salt=struct.pack('<Q', i), person=b'udsmauth').digest()
    return sub(1, 32), sub(2, 16)


def recv_msg(s):
    hdr = b''
    while len(hdr) < 24:
        b = s.recv(24 - len(hdr))
        if not b:
            fail('node 0 hung up on a member')
        hdr += b
    mtype, _, _, ln = struct.unpack_from('<BBHI', hdr)
    body = b''
    while len(body) < ln:
        body += s.recv(ln - len(body))
    return mtype, body


class Member:
    """A client holding the secret: runs the handshake as a joiner would."""

    def __init__(self, port, secret):
        key, cluster = derive(secret)
        self.s = socket.create_connection(('127.0.0.1', port), timeout=10)
        ni = os.urandom(32)
        self.s.sendall(msg(AUTH_HELLO, struct.pack('<IIII', MAGIC, VERSION, 1, NODE_ANY) + ni))
        mtype, body = recv_msg(self.s)
        if mtype != AUTH_PROOF:
            fail('a member got message type %d instead of AUTH_PROOF' % mtype)
        id_r, nr, mac_r = struct.unpack('<I', body[:4])[0], body[4:36], body[36:]

        def transcript(d):
            return (b'udsm-auth' + d + struct.pack('<II', VERSION, 1) + cluster +
                    struct.pack('<II', NODE_ANY, id_r) + ni + nr)
        want = hmac.new(key, transcript(b'R'), hashlib.sha256).digest()
        if id_r != 0 or not hmac.compare_digest(want, mac_r):
            fail('node 0\'s proof does not verify as docs/PROTOCOL.md describes it')
        self.s.sendall(msg(AUTH_CONFIRM, hmac.new(key, transcript(b'I'), hashlib.sha256).digest()))

    def join_and_leave(self):
        """HELLO, the offer, MAPPED: admitted. Then hang up before the peer table."""
        self.s.sendall(msg(HELLO, hello_payload(), src=0xFFFF))
        mtype, body = recv_msg(self.s)
        if mtype != HELLO:
            fail('a member got message type %d instead of the offer' % mtype)
        nodes = struct.unpack_from('<I', body, 16)[0]
        self.s.sendall(msg(2))  # MAPPED
        return nodes

    def close(self):
        self.s.close()


def members():
    env = {'UDSM_SECRET': 'members-secret'}
    n0, port = first(3, env)
    m = Member(port, b'members-secret')
    nodes = m.join_and_leave()
    if nodes != 3:
        fail('the offer says %d nodes, want 3' % nodes)
    quiet = Member(port, b'members-secret')  # authenticated, then silent
    n0.wait_for(' joined (2 of 3)')
    m.close()  # admitted as node 1, now gone: node 0 must drop it, not wait for it
    n0.wait_for('left before the cluster formed')
    js = [joiner(port, env) for _ in range(2)]
    out0 = expect(n0, 0, 'left before the cluster formed', who='node 0')
    for j in js:
        expect(j, 0, who='joiner')
    joined = [l for l in out0.splitlines() if ' joined (' in l]
    if len(joined) != 3:  # the member, then the two joiners as nodes 1 and 2 again
        fail('node 0 admitted %d times, want 3:\n%s' % (len(joined), out0))
    if '(2 of 3)' not in joined[1] or '(3 of 3)' not in joined[2]:
        fail('after the member left, the joiners were not admitted as nodes 1 and 2:\n' + out0)
    quiet.close()
    print('a member that left after MAPPED was removed; the joiners became nodes 1 and 2')


def overfull():
    """More members than places map the region in one round of node 0's gate: exactly the
    places are admitted and the rest turned away (their connection closed), never more. (Node 0
    then fails to form: the admitted member does not go on.)"""
    env = {'UDSM_SECRET': 'overfull-secret'}
    n0, port = first(2, env)
    ms = [Member(port, b'overfull-secret') for _ in range(3)]
    for m in ms:  # HELLO, and each gets an offer of the one place
        m.s.sendall(msg(HELLO, hello_payload(), src=0xFFFF))
        mtype, _ = recv_msg(m.s)
        if mtype != HELLO:
            fail('a member got message type %d instead of the offer' % mtype)
    os.kill(n0.p.pid, signal.SIGSTOP)  # every MAPPED then arrives in one poll round
    for m in ms:
        m.s.sendall(msg(2))  # MAPPED
    time.sleep(0.3)
    os.kill(n0.p.pid, signal.SIGCONT)
    n0.wait_for(' joined (')
    time.sleep(0.5)
    turned = 0
    for m in ms:  # the ones turned away see their connection closed
        m.s.settimeout(0.2)
        try:
            turned += m.s.recv(1) == b''
        except ConnectionResetError:
            turned += 1
        except socket.timeout:
            pass
        m.close()
    out0 = n0.wait()
    if n0.rc is None or n0.rc < 0:
        fail('node 0 did not exit on its own (rc %s):\n%s' % (n0.rc, out0))
    joined = [l for l in out0.splitlines() if ' joined (' in l]
    if len(joined) != 1 or '(2 of 2)' not in joined[0]:
        fail('node 0 admitted %d joiners for its one place:\n%s' % (len(joined), out0))
    # The ones beyond the place are refused in the gate's round ('after the cluster was
    # full'), or, if the kernel delivered their MAPPED in a later round, closed when the gate
    # ends: either way their connection closes.
    if turned != 2:
        fail('node 0 did not turn away the two members beyond its one place (%d saw their '
             'connection closed):\n%s' % (turned, out0))
    print('3 members mapped in one round for 1 place: 1 admitted, 2 turned away')


def run_while(nodes, raws, limit):
    """Poll the raw clients until every node exited or @limit seconds passed."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and any(n.p.poll() is None for n in nodes):
        for r in raws:
            r.poll()
        time.sleep(0.05)
    return time.monotonic() - t0


def right_secret():
    env = {'UDSM_SECRET': 'correct horse battery staple'}
    n0, port = first(3, env)
    js = [joiner(port, env), joiner(port, env, ['--secret', 'correct horse battery staple'])]
    expect(n0, 0, who='node 0 (UDSM_SECRET)')
    for j in js:
        expect(j, 0, who='joiner')
    print('secret from UDSM_SECRET and from udsm_config.secret: cluster formed')

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, 'secret')
        with open(path, 'w') as f:
            f.write('s3cret from a file\n')
        os.chmod(path, 0o600)
        n0, port = first(2, {'UDSM_SECRET_FILE': path})
        j = joiner(port, {'UDSM_SECRET': 's3cret from a file'})
        expect(n0, 0, who='node 0 (UDSM_SECRET_FILE)')
        expect(j, 0, who='joiner')
        print('secret from a 0600 UDSM_SECRET_FILE (trailing newline dropped): cluster formed')
        os.chmod(path, 0o640)
        n = Node(['--nodes', '2', 'crc'], {'UDSM_SECRET_FILE': path})
        expect(n, 2, 'refusing the secret file', 'chmod 600', who='node with a 0640 file')
        print('a group-readable secret file is refused with a clear error')
        fifo = os.path.join(d, 'fifo')
        os.mkfifo(fifo, 0o600)
        n = Node(['--nodes', '2', 'crc'], {'UDSM_SECRET_FILE': fifo})
        n.wait(timeout=20)
        if n.rc != 2 or 'refusing the secret file' not in n.out:
            fail('a FIFO as the secret file: exit %s, want 2 and a refusal (not a hang):\n%s'
                 % (n.rc, n.out))
        print('a FIFO as the secret file is refused at once, not waited on')


def wrong_secret():
    cases = [
        ({'UDSM_SECRET': 'alpha'}, {'UDSM_SECRET': 'beta'},
         'could not prove it holds our cluster secret', 'our proof did not verify there'),
        ({'UDSM_SECRET': 'alpha'}, {},
         'requires a cluster secret and this node has none',
         'it has no cluster secret and this node has one'),
        ({}, {'UDSM_SECRET': 'beta'}, 'it has no cluster secret and this node has one',
         'it has a cluster secret and this node has none'),
    ]
    for env0, envj, joiner_text, first_text in cases:
        n0, port = first(2, env0)
        j = joiner(port, envj)
        out = expect(j, 3, joiner_text, 'udsm_open: authentication failed', who='refused joiner')
        # Node 0 is still waiting: the right joiner (same secret) completes the cluster.
        good = joiner(port, env0)
        out0 = expect(n0, 0, 'refused 127.0.0.1:', first_text, who='node 0')
        expect(good, 0, who='joiner with the right secret')
        print('refused (%s vs %s):\n  joiner: %s\n  node 0: %s' % (
            env0 or 'no secret', envj or 'no secret',
            [l for l in out.splitlines() if 'authentication' in l][0],
            [l for l in out0.splitlines() if 'refused' in l][0]))


def raw_hello():
    env = {'UDSM_SECRET': 'raw-hello-secret'}
    n0, port = first(3, env)
    raws = [Raw(port, m) for m in ('hello', 'nosecret', 'forge', 'hello')]
    run_while([], raws, 0)
    time.sleep(0.3)
    for r in raws:
        r.poll()
    t0 = time.monotonic()
    js = [joiner(port, env) for _ in range(2)]
    took = run_while([n0] + js, raws, 60)
    for r in raws:
        r.poll()
        r.check_not_admitted()
    expect(n0, 0, who='node 0')
    for j in js:
        expect(j, 0, who='joiner')
    if took > BOUND:
        fail('the cluster took %.1f s to form next to raw clients (bound %.1f s)' % (took, BOUND))
    if AUTH_FAIL not in raws[2].types():
        fail('the forged AUTH_CONFIRM was not answered with AUTH_FAIL: %s' % raws[2].types())
    print('raw clients got only %s; cluster formed in %.2f s (%.2f s after the first joiner)' %
          ([r.types() for r in raws], took, time.monotonic() - t0))
    for r in raws:
        r.close()


def strays(modes, nodes=4, nofile=None, crowded=None):
    env = {'UDSM_SECRET': 'strays-secret'}
    n0, port = first(nodes, env, nofile=nofile)
    raws = [Raw(port, m) for m in modes]
    run_while([], raws, 0)
    time.sleep(0.2)
    t0 = time.monotonic()
    js = [joiner(port, env) for _ in range(nodes - 1)]
    took = run_while([n0] + js, raws, 60)
    out0 = expect(n0, 0, who='node 0')
    for j in js:
        expect(j, 0, who='joiner')
    for r in raws:
        r.poll()
        r.check_not_admitted()
    if crowded and crowded not in out0:
        fail('%d strays did not crowd node 0 (%r):\n%s' % (len(raws), crowded, out0))
    joined = [l for l in out0.splitlines() if ' joined (' in l]
    if len(joined) != nodes - 1:
        fail('node 0 admitted %d nodes, want %d:\n%s' % (len(joined), nodes - 1, out0))
    if took > BOUND:
        fail('the cluster took %.1f s to form among %d strays (bound %.1f s)' %
             (took, len(raws), BOUND))
    print('%d strays (%s): cluster of %d formed in %.2f s, admitted exactly the %d joiners' % (
        len(raws), ', '.join(sorted(set(modes))), nodes, took, nodes - 1))
    for r in raws:
        r.close()


def main():
    scenario = sys.argv[2]
    random.seed(os.getpid())
    if scenario == 'right-secret':
        right_secret()
    elif scenario == 'wrong-secret':
        wrong_secret()
    elif scenario == 'raw-hello':
        raw_hello()
    elif scenario == 'strays':
        strays(['idle'] * 8 + ['garbage'] * 3 + ['half'] * 3 + ['drip'] * 2 + ['forge'] * 2 +
               ['hello'] * 2 + ['nosecret'])
    elif scenario == 'members':
        members()
    elif scenario == 'overfull':
        overfull()
    elif scenario == 'flood':
        strays(['idle'] * 120 + ['half'] * 10, nodes=3,
               crowded='too many connections in handshake')
    elif scenario == 'fd-flood':
        strays(['idle'] * 60, nodes=3, nofile=40, crowded='out of file descriptors')
    else:
        fail('unknown scenario ' + scenario)
    print('PASS')


main()
