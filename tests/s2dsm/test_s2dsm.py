#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end tests of tools/s2dsm: real processes on pseudo-terminals, driven with pexpect.

    test_s2dsm.py --s2dsm PATH SCENARIO     run one scenario (see SCENARIOS at the bottom)
    test_s2dsm.py --s2dsm PATH all          run them all, one after the other

Every scenario starts its own s2dsm processes on ports it picks and locks for itself (tests run
in parallel), checks the exact prompts and output lines, and kills every process it started
when it fails. Exit status: 0 passed, 1 failed, 77 skipped (no userfaultfd here).

Output as the tests see it: the terminal echoes what is typed, and turns every "\\n" into
"\\r\\n". Transact() hides both and returns the lines a command printed.
"""
import argparse
import fcntl
import io
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
import time

import pexpect

T = 10  # seconds any single expectation may take
PS = os.sysconf('SC_PAGESIZE')

COUNT = '> How many pages would you like to allocate (greater than 0)? '
CMD = '> Which command should I run? (r:read, w:write): '
MSG = '> Type your new message: '
COMMANDS = (' [*] Commands: r (read), w (write), v (view MSI state), q (quit); '
            'page -1 selects every page')
PF = ' [x] PAGEFAULT'
ADDR_RE = re.compile(r'Address returned by mmap\(\) = 0x[0-9a-f]+$')
# A library notice while the user sits at a prompt: on a line of its own, then the prompt again.
NOTICE_RE = r'\r\n \[[!i]\] ([^\r\n]*)\r\n' + re.escape(CMD)

BAD_CMD = ("{}: type r (read), w (write), v (view state) or q (quit).")


def page_prompt(pages):
    return f'> For which page? (0-{pages - 1}, or -1 for all): '


def lost(page):
    return f' [!] Page {page} is lost: the node holding it is gone'


def eq_lost(got, pg, what, fault=True):
    """@got: the lines of an access to lost page @pg. The library may explain first, in
    notices of its own (the service thread logs before it wakes the faulting thread)."""
    want = ([PF] if fault else []) + [lost(pg)]
    k = len(got) - len(want)
    eq(got[max(k, 0):], want, what)
    check(all(ln.startswith(' [!] ') and not ln.startswith(' [!] Page ') for ln in got[:k]),
          f'{what}: other lines before the loss: {got}')


def page(n, text):
    return [f' [*] Page {n}:', text]


def quote(s):
    return "'" + (s[:40] + '...' if len(s) > 40 else s) + "'"


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def cut(s, n=3000):
    s = s if isinstance(s, str) else repr(s)
    return s if len(s) <= n else f'{s[:n // 2]} [...{len(s) - n} more...] {s[-n // 2:]}'


def eq(got, want, what):
    if got != want:
        raise Fail(f'{what}:\n  got  {cut(repr(got))}\n  want {cut(repr(want))}')


def check(cond, what):
    if not cond:
        raise Fail(what)


# ---------------------------------------------------------------------------------------------
# Ports: random ones below the kernel's ephemeral range, so no bind(port 0) elsewhere can take
# them, each locked (byte <port> of one shared file, a POSIX record lock that dies with the
# process) so that scenarios running in parallel never pick the same one.

class Ports:
    LOCKFILE = os.path.join(tempfile.gettempdir(), f's2dsm-test-ports-{os.getuid()}.lock')

    def __init__(self):
        self.f = None
        self.mine = set()  # a process may lock the same byte again: remember what we took

    def get(self):
        if self.f is None:
            self.f = open(self.LOCKFILE, 'a')
        for _ in range(1000):
            port = random.randint(20000, 32000)
            if port in self.mine:
                continue
            self.mine.add(port)
            try:
                fcntl.lockf(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
            except OSError:
                continue
            s = socket.socket()
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue  # in use; keep it locked, it is no good to anyone else either
            finally:
                s.close()
            return port
        raise Fail('no free port found')


PORTS = Ports()


# ---------------------------------------------------------------------------------------------
# One s2dsm process.

class Proc:
    all = []
    exe = None

    def __init__(self, name, args, raw=False, extra_env=None):
        """raw: the terminal neither echoes nor edits lines (for input longer than the
        4095 bytes a line of a terminal in canonical mode holds)."""
        self.name = name
        self.args = args
        self.raw = raw
        self.log = io.StringIO()
        env = dict(os.environ)
        env.pop('UDSM_LOG_LEVEL', None)
        env.pop('UDSM_STATS', None)  # it adds transfer counts to 'v' (sc_transfers)
        env.update(extra_env or {})
        if raw:
            cmd, argv = '/bin/sh', ['-c', 'stty -icanon -echo min 1 time 0 && exec "$0" "$@"',
                                    Proc.exe] + args
        else:
            cmd, argv = Proc.exe, args
        self.p = pexpect.spawn(cmd, argv, env=env, encoding='utf-8', codec_errors='replace',
                               timeout=T, maxread=65536, dimensions=(50, 200))
        self.p.logfile_read = self.log
        self.status = None
        Proc.all.append(self)

    def expect(self, s, timeout=T):
        """Wait for the exact text @s; return what came before it."""
        try:
            self.p.expect_exact(s, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as e:
            if 'userfaultfd' in self.log.getvalue():
                raise Skip(f'{self.name}: userfaultfd is not usable here')
            raise Fail(f'{self.name}: did not print {s!r} ({type(e).__name__}); output so far:\n'
                       + cut(self.log.getvalue())) from None
        return self.p.before

    def expect_re(self, pattern, timeout=T):
        try:
            self.p.expect(pattern, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as e:
            raise Fail(f'{self.name}: did not print /{pattern}/ ({type(e).__name__}); output so '
                       'far:\n' + cut(self.log.getvalue())) from None
        return self.p.match

    @staticmethod
    def lines(text):
        """Terminal output to lines; the text before a prompt ends with a line end."""
        if not text:
            return []
        check(text.endswith('\r\n'), f'output does not end a line: {text!r}')
        return text[:-2].split('\r\n')

    def send(self, text):
        """Type @text and Enter; written in pieces, as a terminal takes what it can."""
        data = (text + '\n').encode()
        while data:
            n = os.write(self.p.child_fd, data[:4096])
            data = data[n:]

    def transact(self, text, prompt):
        """Type @text, wait for @prompt; return the lines printed in between."""
        self.send(text)
        out = self.expect(prompt)
        # A library notice that came while we typed (printed over the prompt) is no output
        # of the command; notices() looks for the expected ones.
        out = re.sub('^(' + NOTICE_RE + ')+', '', out)
        if not self.raw:
            check(out.startswith(text + '\r\n'), f'{self.name}: no echo of {text!r}: {out!r}')
            out = out[len(text) + 2:]
        return self.lines(out)

    def quiet(self, secs=0.3):
        """Collect output until there has been none for @secs."""
        got = self.p.buffer  # what an expectation read past its match: take it
        self.p.buffer = ''
        self.p._before = self.p.buffer_type()  # pexpect keeps a copy for .before
        while True:
            try:
                got += self.p.read_nonblocking(65536, timeout=secs)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return got

    # The commands, each from the command prompt back to it.
    def do(self, cmd, pg, msg=None, pages=None):
        eq(self.transact(cmd, page_prompt(pages or self.pages)), [], f'{self.name}: {cmd}')
        if msg is None:
            return self.transact(str(pg), CMD)
        eq(self.transact(str(pg), MSG), [], f'{self.name}: {cmd} {pg}')
        return self.transact(msg, CMD)

    def read(self, pg):
        return self.do('r', pg)

    def write(self, pg, msg):
        return self.do('w', pg, msg)

    def state(self, pg):
        return self.do('v', pg)

    def expect_state(self, want):
        """@want: one 'M', 'S' or 'I' per page."""
        names = {'M': 'MODIFIED', 'S': 'SHARED', 'I': 'INVALID'}
        eq(self.state(-1), [f' [*] Page {i}: {names[c]}' for i, c in enumerate(want)],
           f'{self.name}: states')

    def wait_exit(self, timeout=T):
        try:
            self.p.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            raise Fail(f'{self.name}: still running; output:\n'
                       + cut(self.log.getvalue())) from None
        out = self.p.before
        self.p.close()
        self.status = self.p.exitstatus if self.p.signalstatus is None else -self.p.signalstatus
        return out

    def quit(self, how='q'):
        """Leave with q (or 'eof'); return the lines printed on the way out."""
        if how == 'eof':
            self.p.sendeof()
        else:
            self.send(how)
        out = self.wait_exit()
        eq(self.status, 0, f'{self.name}: exit status')
        # Typed text is echoed; end of input is not, but s2dsm ends the prompt's line.
        skip = '\r\n' if how == 'eof' else '' if self.raw else how + '\r\n'
        check(out.startswith(skip), f'{self.name}: output on {how!r}: {out!r}')
        return self.lines(out[len(skip):])

    def kill(self):
        if self.p.isalive():
            self.p.kill(signal.SIGKILL)
        self.wait_exit()


def start_first(args, nodes=2, name='A', raw=False, extra_env=None):
    a = Proc(name, args, raw=raw, extra_env=extra_env)
    out = a.expect(COUNT)
    check(re.fullmatch(rf' \[\*\] First process of {nodes}: listening on [0-9.]+:\d+\r\n', out),
          f'{name}: first output {out!r}')
    return a


def start_joiner(args, join, name='B', raw=False, extra_env=None):
    b = Proc(name, args, raw=raw, extra_env=extra_env)
    eq(b.expect(f' [*] Joining the first process at {join}; waiting for it...\r\n'), '',
       f'{name}: first output')
    return b


def check_header(p, lines, pages, node, nodes, first):
    """The lines a process prints once the cluster is up; returns the address line."""
    want = [f' [*] Waiting for {nodes - 1} more process{"" if nodes == 2 else "es"} to join...'] \
        if first else []
    want += [lines[len(want)] if len(lines) > len(want) else '?',
             f'Size: {pages * PS} bytes ({pages} page{"" if pages == 1 else "s"})',
             f' [*] This process is node {node} of {nodes}', COMMANDS]
    eq(lines, want, f'{p.name}: header')
    addr = want[-4]
    check(ADDR_RE.match(addr), f'{p.name}: address line {addr!r}')
    p.pages = pages
    return addr


def pair(pages, raw_a=False, raw_b=False, extra_env=None, opts=()):
    """A (first) and B, paired with the positional ports as the assignment does it."""
    pa, pb = PORTS.get(), PORTS.get()
    a = start_first([str(pa), str(pb)] + list(opts), raw=raw_a, extra_env=extra_env)
    b = start_joiner([str(pb), str(pa)] + list(opts), f'127.0.0.1:{pa}', raw=raw_b,
                     extra_env=extra_env)
    addr = check_header(a, a.transact(str(pages), CMD), pages, 0, 2, True)
    eq(check_header(b, b.lines(b.expect(CMD)), pages, 1, 2, False), addr, 'B: address')
    return a, b


def notices(p, n=1):
    """Wait for @n library notices printed over a prompt, and what else follows; return them."""
    got = [p.expect_re(NOTICE_RE).group(1) for _ in range(n)]
    rest = p.quiet()
    got += re.findall(NOTICE_RE, rest)
    check(not re.sub(NOTICE_RE, '', rest), f'{p.name}: unexpected output {rest!r}')
    return got


# ---------------------------------------------------------------------------------------------
# Scenarios.

def sc_pair():
    """Positional ports; the second process connects while the first is at its prompt and
    waits; whichever starts first is first; both leave with q; a peer that quits is noticed."""
    pa, pb = PORTS.get(), PORTS.get()
    a = start_first([str(pa), str(pb)])
    b = start_joiner([str(pb), str(pa)], f'127.0.0.1:{pa}')
    time.sleep(0.5)
    eq(b.quiet(), '', 'B: output while the first process is at its prompt')
    check(b.p.isalive(), 'B: still waiting')
    addr = check_header(a, a.transact('4', CMD), 4, 0, 2, True)
    eq(check_header(b, b.lines(b.expect(CMD)), 4, 1, 2, False), addr, 'B: address')
    eq(a.quit(), [' [*] Leaving the cluster'], 'A: quit')
    got = notices(b)
    check(any('node 0' in n for n in got), f'B: notice of A leaving: {got}')
    eq(b.quit(), [' [*] Leaving the cluster'], 'B: quit')

    # The other way round: the process started first is the first one, whatever its ports.
    b = start_first([str(pb), str(pa)], name='B')
    a = start_joiner([str(pa), str(pb)], f'127.0.0.1:{pb}', name='A')
    addr = check_header(b, b.transact('1', CMD), 1, 0, 2, True)
    eq(check_header(a, a.lines(a.expect(CMD)), 1, 1, 2, False), addr, 'A: address')
    eq(a.write(0, 'x'), [PF] + page(0, 'x'), 'A: write')
    eq(b.read(0), [PF] + page(0, 'x'), 'B: read')
    a.quit()
    notices(b)
    b.quit()


def sc_coherence():
    """Write on A then read on B, and the MSI states on both after every step."""
    a, b = pair(4)
    a.expect_state('IIII')
    b.expect_state('IIII')
    eq(a.write(0, 'hello from A'), [PF] + page(0, 'hello from A'), 'A: write 0')
    a.expect_state('MIII')
    b.expect_state('IIII')
    eq(b.read(0), [PF] + page(0, 'hello from A'), 'B: read 0')
    a.expect_state('SIII')
    b.expect_state('SIII')
    eq(b.read(0), page(0, 'hello from A'), 'B: read 0 again (Shared: no fault)')
    eq(a.read(0), page(0, 'hello from A'), 'A: read 0 (Shared: no fault)')
    eq(b.write(0, 'hello from B'), [PF] + page(0, 'hello from B'), 'B: write 0 (Shared)')
    a.expect_state('IIII')
    b.expect_state('MIII')
    eq(b.write(0, 'B again'), page(0, 'B again'), 'B: write 0 (Modified: no fault)')
    eq(b.read(0), page(0, 'B again'), 'B: read 0 (Modified: no fault)')
    eq(a.read(0), [PF] + page(0, 'B again'), 'A: read 0')
    a.expect_state('SIII')
    b.expect_state('SIII')
    eq(a.write(0, 'A again'), [PF] + page(0, 'A again'), 'A: write 0 (Shared)')
    a.expect_state('MIII')
    b.expect_state('IIII')
    eq(b.write(0, 'B writes'), [PF] + page(0, 'B writes'), 'B: write 0 (Invalid)')
    a.expect_state('IIII')
    b.expect_state('MIII')
    # Text that is not ASCII goes through unchanged.
    eq(a.write(1, 'héllo wörld ✓'), [PF] + page(1, 'héllo wörld ✓'), 'A: write 1')
    eq(b.read(1), [PF] + page(1, 'héllo wörld ✓'), 'B: read 1')
    a.quit()
    notices(b)
    b.quit()


def sc_write_b_read_a():
    """The joining process writes, the first one reads; an unwritten page reads empty."""
    a, b = pair(4)
    eq(b.write(1, 'page one from B'), [PF] + page(1, 'page one from B'), 'B: write 1')
    eq(b.write(2, 'page two from B'), [PF] + page(2, 'page two from B'), 'B: write 2')
    b.expect_state('IMMI')
    a.expect_state('IIII')
    eq(a.read(1), [PF] + page(1, 'page one from B'), 'A: read 1')
    eq(a.read(2), [PF] + page(2, 'page two from B'), 'A: read 2')
    eq(a.read(3), [PF] + page(3, ''), 'A: read 3 (never written)')
    eq(a.read(1), page(1, 'page one from B'), 'A: read 1 again')
    a.expect_state('ISSS')
    b.expect_state('ISSI')
    b.quit()
    notices(a)
    a.quit()


def sc_all_pages():
    """-1 for write and read over 100 pages."""
    n = 100
    a, b = pair(n)
    every = range(n)
    eq(a.write(-1, 'all from A'), sum(([PF] + page(i, 'all from A') for i in every), []),
       'A: write -1')
    a.expect_state('M' * n)
    b.expect_state('I' * n)
    eq(b.read(-1), sum(([PF] + page(i, 'all from A') for i in every), []), 'B: read -1')
    eq(b.read(-1), sum((page(i, 'all from A') for i in every), []), 'B: read -1 again')
    a.expect_state('S' * n)
    b.expect_state('S' * n)
    eq(b.write(-1, 'all from B'), sum(([PF] + page(i, 'all from B') for i in every), []),
       'B: write -1')
    a.expect_state('I' * n)
    b.expect_state('M' * n)
    eq(a.read(-1), sum(([PF] + page(i, 'all from B') for i in every), []), 'A: read -1')
    a.expect_state('S' * n)
    b.expect_state('S' * n)
    # One page in the middle changes; -1 then faults on that page alone.
    eq(b.write(57, 'odd one'), [PF] + page(57, 'odd one'), 'B: write 57')
    want = []
    for i in every:
        want += ([PF] + page(i, 'odd one')) if i == 57 else page(i, 'all from B')
    eq(a.read(-1), want, 'A: read -1 after one write')
    a.quit()
    notices(b)
    b.quit()


def many_pages(opts):
    """-1 over more pages than s2dsm keeps in flight or waiting to be printed (its window is
    256 pages), with every mix of states; the same lines with and without --serial."""
    n = 600
    a, b = pair(n, opts=opts)
    every = range(n)
    eq(a.write(-1, 'A'), sum(([PF] + page(i, 'A') for i in every), []), 'A: write -1')
    eq(b.read(-1), sum(([PF] + page(i, 'A') for i in every), []), 'B: read -1')
    # B writes a few pages: A's copies of them go; A's read -1 fetches those alone.
    odd = {0, 1, 255, 256, 257, 511, 599}
    for i in sorted(odd):
        eq(b.write(i, f'B{i}'), [PF] + page(i, f'B{i}'), f'B: write {i}')
    want = []
    for i in every:
        want += ([PF] + page(i, f'B{i}')) if i in odd else page(i, 'A')
    eq(a.read(-1), want, 'A: read -1, some pages changed')
    eq(a.read(-1), sum((page(i, f'B{i}' if i in odd else 'A') for i in every), []),
       'A: read -1 again (all here)')
    # A's reads left every page Shared on B; B makes the odd pages Modified again, then a
    # write -1 upgrades all but those.
    for i in sorted(odd):
        eq(b.write(i, f'B{i}'), [PF] + page(i, f'B{i}'), f'B: write {i} again')
    eq(b.write(-1, 'all B'), sum((([] if i in odd else [PF]) + page(i, 'all B') for i in every),
                                 []), 'B: write -1 over Modified and Shared pages')
    eq(b.write(-1, 'B again'), sum((page(i, 'B again') for i in every), []),
       'B: write -1 again (all Modified)')
    a.expect_state('I' * n)
    b.expect_state('M' * n)
    eq(a.read(-1), sum(([PF] + page(i, 'B again') for i in every), []), 'A: read -1 at last')
    a.quit()
    notices(b)
    b.quit()


def sc_many_pages():
    many_pages(())


def sc_many_pages_serial():
    many_pages(('--serial',))


def sc_overwrite():
    """A shorter message over a longer one leaves no stale tail, here and on the peer."""
    a, b = pair(2)
    eq(a.write(0, 'a rather long message, to be overwritten'),
       [PF] + page(0, 'a rather long message, to be overwritten'), 'A: long')
    eq(a.write(0, 'short'), page(0, 'short'), 'A: short over long')
    eq(b.read(0), [PF] + page(0, 'short'), 'B: read')
    eq(b.write(0, 'xy'), [PF] + page(0, 'xy'), 'B: shorter still')
    eq(a.read(0), [PF] + page(0, 'xy'), 'A: read')
    eq(a.write(0, ''), [PF] + page(0, ''), 'A: empty message')
    eq(b.read(0), [PF] + page(0, ''), 'B: read empty')
    a.quit()
    notices(b)
    b.quit()


def sc_bad_count():
    """Every bad answer to the page count question: one line, and the question again."""
    pa, pb = PORTS.get(), PORTS.get()
    a = start_first([str(pa), str(pb)])
    b = start_joiner([str(pb), str(pa)], f'127.0.0.1:{pa}')
    phys = os.sysconf('SC_PHYS_PAGES')
    top = min(phys, (64 << 30) // PS)
    empty = ' [!] Please type a number of pages greater than 0.'
    cases = [
        ('', empty),
        ('   ', empty),
        ('abc', " [!] 'abc' is not a number: please type a number of pages greater than 0."),
        ('3x', " [!] '3x' is not a number: please type a number of pages greater than 0."),
        ('1e3', " [!] '1e3' is not a number: please type a number of pages greater than 0."),
        ('2.5', " [!] '2.5' is not a number: please type a number of pages greater than 0."),
        ('0', " [!] The number of pages must be greater than 0, not '0'."),
        ('-1', " [!] The number of pages must be greater than 0, not '-1'."),
        ('-99999999999999999999999',
         " [!] The number of pages must be greater than 0, not '-99999999999999999999999'."),
    ]
    for big in (str(top + 1), str(1 << 40), '99999999999999999999999', str(2 ** 64 + 1)):
        cases.append((big, f' [!] {quote(big)} pages do not fit: at most {top} pages of {PS} '
                      'bytes (memory and library limit).'))
    for text, want in cases:
        eq(a.transact(text, COUNT), [want], f'A: page count {text!r}')
    eq(b.quiet(), '', 'B: output while A is asked')
    addr = check_header(a, a.transact(' 3 ', CMD), 3, 0, 2, True)
    eq(check_header(b, b.lines(b.expect(CMD)), 3, 1, 2, False), addr, 'B: address')
    a.quit()
    notices(b)
    b.quit()


def sc_bad_input():
    """Bad commands and page numbers: one line each, the same prompt again, no page touched."""
    a, b = pair(4)
    eq(a.write(0, 'keep me'), [PF] + page(0, 'keep me'), 'A: write 0')
    for text, want in [
            ('', ' [!] Please type a command: r (read), w (write), v (view state) or q (quit).'),
            ('  ', ' [!] Please type a command: r (read), w (write), v (view state) or q (quit).'),
            ('x', ' [!] Unknown command ' + BAD_CMD.format("'x'")),
            ('rw', ' [!] Unknown command ' + BAD_CMD.format("'rw'")),
            ('read', ' [!] Unknown command ' + BAD_CMD.format("'read'")),
            ('-1', ' [!] Unknown command ' + BAD_CMD.format("'-1'")),
            ('r 0', ' [!] Unknown command ' + BAD_CMD.format("'r 0'"))]:
        eq(a.transact(text, CMD), [want], f'A: command {text!r}')
    pp = page_prompt(4)
    for cmd in ('r', 'w', 'v'):
        eq(a.transact(cmd, pp), [], f'A: {cmd}')
        for text, want in [
                ('', ' [!] Please type a page number from 0 to 3, or -1 for all pages.'),
                ('abc', " [!] 'abc' is not a page number: type 0 to 3, or -1 for all pages."),
                ('1.5', " [!] '1.5' is not a page number: type 0 to 3, or -1 for all pages."),
                ('0x1', " [!] '0x1' is not a page number: type 0 to 3, or -1 for all pages."),
                ('1 2', " [!] '1 2' is not a page number: type 0 to 3, or -1 for all pages."),
                ('4', " [!] There is no page '4': type 0 to 3, or -1 for all pages."),
                ('-2', " [!] There is no page '-2': type 0 to 3, or -1 for all pages."),
                ('99999999999999999999',
                 " [!] There is no page '99999999999999999999': type 0 to 3, or -1 for all "
                 "pages."),
                ('-99999999999999999999',
                 " [!] There is no page '-99999999999999999999': type 0 to 3, or -1 for all "
                 "pages.")]:
            eq(a.transact(text, pp), [want], f'A: {cmd}, page {text!r}')
        if cmd == 'r':
            eq(a.transact(' 1 ', CMD), [PF] + page(1, ''), 'A: read 1 after bad pages')
        elif cmd == 'w':
            eq(a.transact('2', MSG), [], 'A: w 2')
            eq(a.transact('two', CMD), [PF] + page(2, 'two'), 'A: write 2 after bad pages')
        else:
            eq(a.transact('3', CMD), [' [*] Page 3: INVALID'], 'A: v 3 after bad pages')
    # Upper case works too.
    eq(a.transact('R', pp), [], 'A: R')
    eq(a.transact('0', CMD), page(0, 'keep me'), 'A: R 0')
    a.expect_state('MSMI')
    eq(b.read(-1), [PF] + page(0, 'keep me') + [PF] + page(1, '') + [PF] + page(2, 'two') +
       [PF] + page(3, ''), 'B: nothing else was written')
    a.quit()
    notices(b)
    b.quit()


def sc_long_lines():
    """Lines far longer than a page (a terminal in raw mode: canonical mode stops at 4095
    bytes) and messages longer than a page, truncated with a warning."""
    a, b = pair(2, raw_a=True)
    huge = 'r' * 200000
    eq(a.transact(huge, CMD), [' [!] Unknown command ' + BAD_CMD.format(quote(huge))],
       'A: long command')
    eq(a.transact('r', page_prompt(2)), [], 'A: r')
    digits = '1' * 100000
    eq(a.transact(digits, page_prompt(2)),
       [f" [!] There is no page {quote(digits)}: type 0 to 1, or -1 for all pages."],
       'A: long page number')
    eq(a.transact('0', CMD), [PF] + page(0, ''), 'A: read 0')
    fits = 'f' * (PS - 1)
    eq(a.write(0, fits), [PF] + page(0, fits), 'A: message of page size - 1 (page Shared)')
    for n in (PS, PS + 1, 5000, 300000):
        msg = ''.join(chr(ord('a') + i % 26) for i in range(n))
        eq(a.write(1, msg),
           [f' [!] The message is {n} bytes but a page holds {PS - 1}: only the first '
            f'{PS - 1} are written.'] + ([PF] if n == PS else []) + page(1, msg[:PS - 1]),
           f'A: message of {n} bytes')
    eq(b.read(1), [PF] + page(1, msg[:PS - 1]), 'B: read the truncated message')
    eq(b.read(0), [PF] + page(0, fits), 'B: read the full page')
    a.quit()
    notices(b)
    b.quit()


def sc_eof():
    """End of input at every prompt leaves cleanly (exit 0); a joiner whose first process
    leaves before the cluster forms says so and exits 1."""
    pa, pb = PORTS.get(), PORTS.get()
    # At the page count question, with a joiner waiting.
    a = start_first([str(pa), str(pb)])
    b = start_joiner([str(pb), str(pa)], f'127.0.0.1:{pa}')
    eq(a.quit('eof'), [], 'A: EOF at the page count')
    out = b.wait_exit()
    eq(b.status, 1, 'B: exit status when the first process left early')
    check(re.search(rf's2dsm: could not join the cluster at 127\.0\.0\.1:{pa}: ', out),
          f'B: message when the first process left early: {out!r}')

    # A first process that vanishes right after the joiner found it, before the library
    # connects: the joiner must not retry for ever (it watches its own first connection).
    fake = PORTS.get()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', fake))
    s.listen()
    b = start_joiner(['--join', f'127.0.0.1:{fake}'], f'127.0.0.1:{fake}')
    s.close()
    out = b.wait_exit()
    eq(b.status, 1, 'B: exit status when the first process vanished')
    check(re.fullmatch(rf's2dsm: could not join the cluster at 127\.0\.0\.1:{fake}: [^\r\n]+\r\n',
                       out), f'B: message when the first process vanished: {out!r}')

    # At the command prompt (B), the page prompt (A).
    a, b = pair(2)
    eq(b.quit('eof'), [' [*] Leaving the cluster'], 'B: EOF at the command prompt')
    notices(a)
    eq(a.transact('r', page_prompt(2)), [], 'A: r')
    eq(a.quit('eof'), [' [*] Leaving the cluster'], 'A: EOF at the page prompt')

    # At the message prompt.
    a, b = pair(2)
    eq(a.transact('w', page_prompt(2)), [], 'A: w')
    eq(a.transact('1', MSG), [], 'A: w 1')
    eq(a.quit('eof'), [' [*] Leaving the cluster'], 'A: EOF at the message prompt')
    notices(b)
    eq(b.quit('eof'), [' [*] Leaving the cluster'], 'B: EOF')


def sc_cli():
    """The command line: --help, bad arguments (exit 2), unreachable peers (exit 1, at once)."""
    h = Proc('help', ['--help'])
    out = h.wait_exit()
    eq(h.status, 0, '--help: exit status')
    check(out.startswith('Usage: ') and 'LOCAL_PORT REMOTE_PORT' in out and '--join' in out
          and '--listen' in out and '--nodes' in out and '--timeout' in out
          and 'v  view the MSI state' in out, f'--help: {out!r}')
    closed = PORTS.get()
    for args, want in [
            (['5000'], 'give two ports'),
            (['1', '2', '3'], 'give two ports'),
            (['abc', '5000'], "'abc' is not a port number"),
            (['5000', '0'], "'0' is not a port number"),
            (['70000', '5000'], "'70000' is not a port number"),
            (['5000', '5000'], 'must differ'),
            (['5000', '6000', '--join', '127.0.0.1:5000'], 'not both'),
            (['--nodes', '1'], '--nodes wants a number from 2 to 64'),
            (['--nodes', '65'], '--nodes wants a number from 2 to 64'),
            (['--nodes', 'x'], '--nodes wants a number from 2 to 64'),
            (['--timeout', 'soon'], '--timeout wants a number of milliseconds'),
            (['--join', '127.0.0.1:5000', '--nodes', '3'], '--nodes is for the first process'),
            (['--bogus'], "Try '"),
            (['--join'], "Try '")]:
        p = Proc('cli', args)
        out = p.wait_exit()
        eq(p.status, 2, f'{args}: exit status')
        check(want in out, f'{args}: {out!r} lacks {want!r}')
    for args, want in [
            (['--join', f'127.0.0.1:{closed}'],
             f's2dsm: cannot reach the first process at 127.0.0.1:{closed}: Connection refused'),
            (['--join', 'no-such-host.invalid:5000'],
             's2dsm: cannot reach the first process at no-such-host.invalid:5000: unknown host'),
            (['--join', '127.0.0.1'],
             's2dsm: cannot reach the first process at 127.0.0.1: not a HOST:PORT address'),
            (['--listen', 'nowhere'], 's2dsm: cannot listen on nowhere: not a HOST:PORT address')]:
        p = Proc('cli', args)
        t = time.monotonic()
        out = p.wait_exit(timeout=30)  # a name server may take its time over the .invalid host
        eq(p.status, 1, f'{args}: exit status')
        eq(out, want + '\r\n', f'{args}: message')
        check('invalid' in args[1] or time.monotonic() - t < 6,
              f'{args}: took {time.monotonic() - t:.1f} s')


def sc_port_in_use():
    """A local port that is taken: a clear message, exit 1; the first process survives a
    joiner that gives up after its probe."""
    taken, other = PORTS.get(), PORTS.get()
    s = socket.socket()
    s.bind(('127.0.0.1', taken))
    s.listen()
    want = (f's2dsm: cannot listen on 127.0.0.1:{taken}: the port is in use (by another '
            's2dsm?)\r\n')
    for args in ([str(taken), str(other)], ['--listen', f'127.0.0.1:{taken}']):
        p = Proc('busy', args)
        out = p.wait_exit()
        eq((p.status, out), (1, want), f'{args}: exit status and message')
    # A joiner (its peer is up) whose own port is taken.
    pa = PORTS.get()
    a = start_first([str(pa), str(other)])
    p = Proc('busy', [str(taken), str(pa)])
    out = p.wait_exit()
    eq((p.status, out), (1, want), 'joiner on a taken port')
    s.close()
    # A second first process on A's port.
    p = Proc('busy', [str(pa), str(PORTS.get())])
    out = p.wait_exit()
    eq((p.status, out), (1, want.replace(str(taken), str(pa))), 'second first process')
    # A is unharmed: the real partner joins.
    b = start_joiner([str(other), str(pa)], f'127.0.0.1:{pa}')
    addr = check_header(a, a.transact('2', CMD), 2, 0, 2, True)
    eq(check_header(b, b.lines(b.expect(CMD)), 2, 1, 2, False), addr, 'B: address')
    eq(b.write(1, 'ok'), [PF] + page(1, 'ok'), 'B: write')
    eq(a.read(1), [PF] + page(1, 'ok'), 'A: read')
    a.quit()
    notices(b)
    b.quit()


def sc_timeout():
    """--timeout bounds the wait of a first process and of a joiner; the first process keeps
    waiting for a real joiner after one gave up."""
    p1 = PORTS.get()
    a = start_first(['--listen', f'127.0.0.1:{p1}', '--timeout', '1000'])
    t = time.monotonic()
    a.send('2')
    out = a.wait_exit()
    eq(a.status, 1, 'A: exit status after its timeout')
    check(out.rstrip().endswith('s2dsm: the cluster did not form: Connection timed out'),
          f'A: message {out!r}')
    check(time.monotonic() - t < 5, 'A: gave up in time')

    p2 = PORTS.get()
    a = start_first(['--listen', f'127.0.0.1:{p2}'])
    b = start_joiner(['--join', f'127.0.0.1:{p2}', '--timeout', '1000'], f'127.0.0.1:{p2}')
    t = time.monotonic()
    out = b.wait_exit()
    eq(b.status, 1, 'B: exit status after its timeout')
    check(out.endswith(f'\r\ns2dsm: could not join the cluster at 127.0.0.1:{p2}: Connection '
                       'timed out\r\n'), f'B: message after its timeout: {out!r}')
    check(all(ln.startswith(' [!] ') for ln in b.lines(out)[:-1]),
          f'B: library notices are tagged: {out!r}')
    check(time.monotonic() - t < 5, 'B: gave up in time')
    # A admits B's dead connection, notices it and keeps waiting.
    eq(a.transact('2', ' [*] Waiting for 1 more process to join...\r\n'), [], 'A: pages')
    a.expect_re(r' \[!\] [^\r\n]*\r\n')
    c = start_joiner(['--join', f'127.0.0.1:{p2}'], f'127.0.0.1:{p2}', name='C')
    addr = check_header(a, [' [*] Waiting for 1 more process to join...'] + a.lines(a.expect(CMD)),
                        2, 0, 2, True)
    eq(check_header(c, c.lines(c.expect(CMD)), 2, 1, 2, False), addr, 'C: address')
    a.quit()
    notices(c)
    c.quit()


def sc_peer_killed():
    """SIGKILL the joiner mid-session: the first process says so; its pages, and pages only it
    held, are reported lost; the rest keeps working; q exits 0."""
    a, b = pair(4)
    eq(b.write(0, 'b0'), [PF] + page(0, 'b0'), 'B: write 0')
    eq(b.write(1, 'b1'), [PF] + page(1, 'b1'), 'B: write 1')
    eq(a.read(2), [PF] + page(2, ''), 'A: read 2')
    eq(a.write(3, 'a3'), [PF] + page(3, 'a3'), 'A: write 3')
    b.kill()
    eq(b.status, -signal.SIGKILL, 'B: killed')
    got = notices(a)
    check(any('node 1' in n for n in got), f'A: notice of B dying: {got}')
    eq_lost(a.read(1), 1, 'A: read 1 (home was B)')
    # Once lost, a page is poisoned: the kernel raises SIGBUS without asking the node.
    r = a.read(1)
    eq_lost(r, 1, 'A: read 1 again', fault=PF in r)
    eq_lost(a.read(0), 0, 'A: read 0 (only B had it)')
    r = a.write(1, 'again')
    eq_lost(r, 1, 'A: write 1', fault=PF in r)
    eq(a.read(2), page(2, ''), 'A: read 2 (Shared here)')
    eq(a.read(3), page(3, 'a3'), 'A: read 3 (Modified here)')
    eq(a.write(2, 'a2'), [PF] + page(2, 'a2'), 'A: write 2 (home here)')
    eq(a.read(-1)[-4:], page(2, 'a2') + page(3, 'a3'), 'A: read -1')
    a.expect_state('IIMM')
    eq(a.quit(), [' [*] Leaving the cluster; handing over 2 pages modified only here'],
       'A: quit')


def sc_first_killed():
    """SIGKILL the first process: the joiner loses the pages homed there, keeps its own."""
    a, b = pair(4)
    eq(a.write(1, 'a1'), [PF] + page(1, 'a1'), 'A: write 1')
    eq(b.read(1), [PF] + page(1, 'a1'), 'B: read 1')
    a.kill()
    got = notices(b)
    check(any('node 0' in n for n in got), f'B: notice of A dying: {got}')
    eq_lost(b.read(0), 0, 'B: read 0 (home was A)')
    eq_lost(b.read(2), 2, 'B: read 2 (home was A)')
    eq(b.read(1), page(1, 'a1'), 'B: read 1 (Shared here)')
    eq(b.read(3), [PF] + page(3, ''), 'B: read 3 (home here)')
    eq(b.write(3, 'b3'), [PF] + page(3, 'b3'), 'B: write 3 (home here)')
    eq(b.quit(), [' [*] Leaving the cluster; handing over 1 page modified only here'],
       'B: quit')


def sc_peer_quits():
    """q on the joiner: it hands its pages over before it goes (udsm_close); the first
    process says the peer left and reads everything it had, and becomes the home of its pages."""
    a, b = pair(4)
    eq(a.write(0, 'a0'), [PF] + page(0, 'a0'), 'A: write 0')
    eq(b.read(0), [PF] + page(0, 'a0'), 'B: read 0')
    eq(b.write(1, 'b1'), [PF] + page(1, 'b1'), 'B: write 1')
    eq(b.write(2, 'b2'), [PF] + page(2, 'b2'), 'B: write 2')
    eq(b.quit(), [' [*] Leaving the cluster; handing over 2 pages modified only here'],
       'B: quit')
    got = notices(a)
    check(any('node 1' in n for n in got), f'A: notice of B leaving: {got}')
    eq(a.read(0), page(0, 'a0'), 'A: read 0 (Shared here)')
    eq(a.read(2), [PF] + page(2, 'b2'), 'A: read 2 (only B had it: given back)')
    eq(a.read(1), [PF] + page(1, 'b1'), 'A: read 1 (home was B: handed over)')
    eq(a.read(3), [PF] + page(3, ''), 'A: read 3 (home was B, never written)')
    eq(a.write(3, 'a3'), [PF] + page(3, 'a3'), 'A: write 3 (home here now)')
    eq(a.quit(), [' [*] Leaving the cluster; handing over 1 page modified only here'],
       'A: quit')


def sc_three():
    """Three processes with --listen, --join and --nodes 3."""
    port = PORTS.get()
    hp = f'127.0.0.1:{port}'
    a = start_first(['--listen', hp, '--nodes', '3'], nodes=3)
    b = start_joiner(['--join', hp], hp, name='B')
    c = start_joiner(['--join', hp], hp, name='C')
    addr = check_header(a, a.transact('6', CMD), 6, 0, 3, True)
    lb, lc = b.lines(b.expect(CMD)), c.lines(c.expect(CMD))
    ids = sorted([lb[2][-6], lc[2][-6]])
    eq(ids, ['1', '2'], 'B and C node ids')
    eq(check_header(b, lb, 6, int(lb[2][-6]), 3, False), addr, 'B: address')
    eq(check_header(c, lc, 6, int(lc[2][-6]), 3, False), addr, 'C: address')

    eq(a.write(0, 'zero'), [PF] + page(0, 'zero'), 'A: write 0')
    eq(b.read(0), [PF] + page(0, 'zero'), 'B: read 0')
    eq(c.read(0), [PF] + page(0, 'zero'), 'C: read 0')
    for p in (a, b, c):
        p.expect_state('SIIIII')
    eq(c.write(0, 'from C'), [PF] + page(0, 'from C'), 'C: write 0')
    a.expect_state('IIIIII')
    b.expect_state('IIIIII')
    c.expect_state('MIIIII')
    eq(b.read(0), [PF] + page(0, 'from C'), 'B: read 0 after C wrote')
    a.expect_state('IIIIII')
    b.expect_state('SIIIII')
    c.expect_state('SIIIII')
    eq(b.write(-1, 'B everywhere'), sum(([PF] + page(i, 'B everywhere') for i in range(6)), []),
       'B: write -1')
    eq(a.read(-1), sum(([PF] + page(i, 'B everywhere') for i in range(6)), []), 'A: read -1')
    eq(c.read(-1), sum(([PF] + page(i, 'B everywhere') for i in range(6)), []), 'C: read -1')
    for p in (a, b, c):
        p.expect_state('SSSSSS')
    eq(c.quit(), [' [*] Leaving the cluster'], 'C: quit')
    notices(a)
    notices(b)
    eq(b.quit(), [' [*] Leaving the cluster'], 'B: quit')
    notices(a)
    eq(a.quit(), [' [*] Leaving the cluster'], 'A: quit')


def sc_transfers():
    """With UDSM_STATS set, 'v' also says how often a page moved, as its home counted it."""
    with tempfile.TemporaryDirectory(prefix='s2dsm-stats-') as tmp:
        a, b = pair(2, extra_env={'UDSM_STATS': os.path.join(tmp, 'stats')})
        eq(a.state(0), [' [*] Page 0: INVALID; no transfers counted'], 'A: v 0 before')
        eq(b.state(0), [' [*] Page 0: INVALID; transfers counted by node 0, its home'],
           'B: v 0')
        eq(a.write(0, 'one'), [PF] + page(0, 'one'), 'A: write 0')
        eq(b.write(0, 'two'), [PF] + page(0, 'two'), 'B: write 0')
        eq(a.read(0), [PF] + page(0, 'two'), 'A: read 0')
        eq(a.state(0), [' [*] Page 0: SHARED; moved 3 times, nodes 0 1'], 'A: v 0 after')
        eq(a.state(1), [' [*] Page 1: INVALID; transfers counted by node 1, its home'],
           'A: v 1')
        eq(b.state(1), [' [*] Page 1: INVALID; no transfers counted'], 'B: v 1')
        b.quit()
        notices(a)
        a.quit()
        for n in (0, 1):
            with open(os.path.join(tmp, f'stats.{n}')) as f:
                r = json.loads(f.read().splitlines()[-1])
            eq((r['node'], r['reason']), (n, 'close'), f'report of node {n}')
            if n == 0:
                eq([(h['page'], h['transfers']) for h in r['hot_pages']], [(0, 3)],
                   'node 0: hot pages')


SCENARIOS = {
    'transfers': sc_transfers,
    'pair': sc_pair,
    'coherence': sc_coherence,
    'write-b-read-a': sc_write_b_read_a,
    'all-pages': sc_all_pages,
    'many-pages': sc_many_pages,
    'many-pages-serial': sc_many_pages_serial,
    'overwrite': sc_overwrite,
    'bad-count': sc_bad_count,
    'bad-input': sc_bad_input,
    'long-lines': sc_long_lines,
    'eof': sc_eof,
    'cli': sc_cli,
    'port-in-use': sc_port_in_use,
    'timeout': sc_timeout,
    'peer-killed': sc_peer_killed,
    'first-killed': sc_first_killed,
    'peer-quits': sc_peer_quits,
    'three': sc_three,
}


def run(name):
    Proc.all = []
    try:
        SCENARIOS[name]()
        return 0
    except Skip as e:
        print(f'SKIP {name}: {e}')
        return 77
    except Fail as e:
        print(f'FAIL {name}: {e}', file=sys.stderr)
        for p in Proc.all:
            print(f'--- output of {p.name} (s2dsm {" ".join(p.args)}):\n'
                  f'{cut(p.log.getvalue(), 8000)}', file=sys.stderr)
        return 1
    finally:
        for p in Proc.all:
            if p.p.isalive():
                p.p.kill(signal.SIGKILL)
                p.p.close(force=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--s2dsm', required=True, help='the s2dsm executable')
    ap.add_argument('scenario', choices=sorted(SCENARIOS) + ['all'])
    args = ap.parse_args()
    Proc.exe = os.path.abspath(args.s2dsm)
    names = sorted(SCENARIOS) if args.scenario == 'all' else [args.scenario]
    worst = 0
    for name in names:
        t = time.monotonic()
        rc = run(name)
        print(f'{"ok" if rc == 0 else "SKIP" if rc == 77 else "FAIL"} {name} '
              f'({time.monotonic() - t:.1f} s)')
        worst = max(worst, rc if rc != 77 else 0) if len(names) > 1 else rc
    return worst


if __name__ == '__main__':
    sys.exit(main())
