/* SPDX-License-Identifier: MIT */
/*
 * group.c - floors that take more processes than floor.c's two, with no DSM at all: what this
 * machine itself needs for the costs the remaining targets of docs/PERFORMANCE.md are made of.
 *
 *  - floor_revoke, floor_revoke_busy: taking away one written page's mapping (MADV_DONTNEED),
 *    with every other CPU idle, and with a process busy on each of them. A sharer's drop on an
 *    upgrade and an owner's on a write miss are this operation; on a paravirtualised guest its
 *    cost depends on what the other vCPUs do, whatever process they run. The measuring
 *    process has one thread, as a node whose threads share a CPU (the bench's placement):
 *    no TLB shootdown to another CPU is in it.
 *  - floor_giveup, floor_giveup_busy, floor_take, floor_take_busy: an owner giving up a page it
 *    wrote, idle and busy as above: write-protect, read and drop (floor_giveup), or one
 *    UFFDIO_MOVE with the scratch emptied 64 pages at a time (floor_take: what node.c does
 *    where the kernel has UFFDIO_MOVE). Every write miss and ping-pong transfer has one.
 *  - floor_relay3, floor_relay2: a 16 B request from process 0 to process 1, passed on to
 *    process 2 (16 B), which answers process 0 with 4 KiB: the three hops of a miss whose home
 *    is neither the requester nor the owner. floor_relay2 is the two-process round trip from
 *    the same code, the hops of a miss whose home owns the page.
 *  - floor_fanout4: process 0 sends 16 B to processes 1, 2 and 3, each answers 16 B, and 0
 *    waits for all three: the invalidations of an upgrade with three other sharers, placed as
 *    the 4-node cluster (udsm's upgrade3 figures), against floor_tcp_16's one round trip.
 *  - floor_barrier8_central, floor_barrier8_dissem: 8 processes in back-to-back barriers,
 *    central (every process to process 0 and back) and dissemination (log2 8 rounds, each
 *    process sending to the one 2^k after it), timed on process 0 between barriers;
 *    floor_barrier8_batch: central, process 0's seven releases sent in one system call
 *    (src/os/uring.c, as udsm's service thread sends them), so that none of the processes on
 *    its CPU runs before the last release is out.
 *
 * Every group is forked by the bench's parent process before any cluster runs; process i
 * runs on the CPU of node i of the run's placement (the relay's processes on those of the
 * 3-node cluster's requester, home and owner). Every wait polls, then sleeps, as floor.c's do:
 * once polling (the "_sleep"-less figures) and once sleeping at once ("_sleep").
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "os/uring.h"

#define GROUP_MAX 8
#define WARMUP 64
#define BAR_N 8
#define RESULT_WAIT_MS 60000 /* process 0's figures: a group this late is stuck */
#define EXIT_WAIT_MS 5000

struct group {
	unsigned n;
	int cpu[GROUP_MAX];		/* -1: unpinned */
	int fd[GROUP_MAX][GROUP_MAX];	/* fd[i][j]: process i's end of its connection to j */
	int64_t spin_ns;
	size_t iters;
	bool spinners;			/* processes 1.. only burn CPU until killed */
};

/* What process 0 measures: iters samples into @ns; @sleeps: waits that ended asleep. */
typedef int (*role_fn)(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps);

static void unmesh(struct group *g)
{
	for (unsigned i = 0; i < GROUP_MAX; i++)
		for (unsigned j = 0; j < GROUP_MAX; j++) {
			if (g->fd[i][j] >= 0)
				close(g->fd[i][j]);
			g->fd[i][j] = -1;
		}
}

/* A loopback TCP connection between every two processes of @g. */
static int mesh(struct group *g)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err = 0;

	if (l < 0)
		return -errno;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, GROUP_MAX * GROUP_MAX) ||
	    getsockname(l, (struct sockaddr *)&sa, &sl)) {
		err = -errno;
		goto out;
	}
	for (unsigned i = 0; i < g->n && !err; i++)
		for (unsigned j = i + 1; j < g->n && !err; j++) {
			int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), a = -1;

			if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) ||
			    (a = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) {
				err = -errno;
				if (c >= 0)
					close(c);
				break;
			}
			floor_tune(c);
			floor_tune(a);
			g->fd[i][j] = c;
			g->fd[j][i] = a;
		}
out:
	close(l);
	if (err)
		unmesh(g);
	return err;
}

/* Read exactly @len bytes from @fd within @ms. */
static int read_within(int fd, void *buf, size_t len, int ms)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int r = poll(&pf, 1, ms);

		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		ssize_t n = read(fd, (uint8_t *)buf + got, len - got);

		if (n == 0)
			return -EPIPE;
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			got += (size_t)n;
	}
	return 0;
}

static void child(const struct group *g, unsigned self, role_fn fn, uint64_t *ns, int out,
		  pid_t parent)
{
	uint64_t hdr[2] = { 0, 0 }; /* error, sleeps */
	int err;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1); /* the bench died before the death signal was armed */
	if (self)
		close(out); /* only process 0 reports: its end is the parent's EOF */
	if (g->cpu[self] >= 0)
		pin_self(g->cpu[self]);
	for (unsigned i = 0; i < GROUP_MAX; i++)
		for (unsigned j = 0; j < GROUP_MAX; j++)
			if (i != self && g->fd[i][j] >= 0)
				close(g->fd[i][j]);
	err = fn(g, self, ns, &hdr[1]);
	if (self == 0) {
		hdr[0] = (uint64_t)(int64_t)err;
		if (write(out, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
		    (!err && write(out, ns, g->iters * sizeof(*ns)) !=
				     (ssize_t)(g->iters * sizeof(*ns))))
			_exit(1);
	}
	_exit(err ? 1 : 0);
}

/* Reap every child of a group, waiting up to EXIT_WAIT_MS for each (with @kill_them, the
 * spinners 1.. are killed first and their end is no failure); kill what is left. -1 if any
 * failed. */
static int reap_all(const pid_t *pid, unsigned n, bool kill_them)
{
	int ret = 0;

	for (unsigned i = 0; i < n; i++) {
		int st = 0;

		if (pid[i] <= 0)
			continue;
		if (kill_them && i > 0)
			kill(pid[i], SIGKILL);
		for (int t = 0; t < EXIT_WAIT_MS && waitpid(pid[i], &st, WNOHANG) == 0; t++)
			usleep(1000);
		if (waitpid(pid[i], &st, WNOHANG) == 0) {
			kill(pid[i], SIGKILL);
			waitpid(pid[i], &st, 0);
			ret = -1;
		} else if (!(kill_them && i > 0) && (!WIFEXITED(st) || WEXITSTATUS(st))) {
			ret = -1;
		}
	}
	return ret;
}

/* Fork @g's processes, each running @fn; process 0's samples come back in @ns. */
static int run(struct group *g, role_fn fn, uint64_t *ns, uint64_t *sleeps)
{
	pid_t pid[GROUP_MAX] = { 0 }, parent = getpid();
	uint64_t hdr[2] = { 0, 0 };
	int p[2], err;

	if (pipe2(p, O_CLOEXEC)) {
		err = -errno;
		unmesh(g);
		return err;
	}
	fflush(stdout);
	fflush(stderr);
	for (unsigned i = 0; i < g->n; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			close(p[0]);
			child(g, i, fn, ns, p[1], parent);
		}
		if (pid[i] < 0) {
			err = -errno;
			close(p[0]);
			close(p[1]);
			for (unsigned j = 0; j < i; j++)
				kill(pid[j], SIGKILL);
			reap_all(pid, i, true);
			unmesh(g);
			return err;
		}
	}
	close(p[1]);
	unmesh(g); /* the children hold their ends: a dead one is an EOF to the others */
	err = read_within(p[0], hdr, sizeof(hdr), RESULT_WAIT_MS);
	if (!err && hdr[0])
		err = (int)(int64_t)hdr[0];
	if (!err)
		err = read_within(p[0], ns, g->iters * sizeof(*ns), RESULT_WAIT_MS);
	close(p[0]);
	if (err)
		for (unsigned i = 0; i < g->n; i++)
			kill(pid[i], SIGKILL);
	if (reap_all(pid, g->n, g->spinners) && !err)
		err = -ECHILD;
	*sleeps = hdr[1];
	return err;
}

/* ------------------------------------------------------------------------------------------
 * The roles.
 */

/* The solo floors' roles: process 0 measures once its neighbours run; every other process is a
 * neighbour busy in user space until it is killed. */
static void solo_start(unsigned self)
{
	if (self) {
		for (volatile uint64_t x = 0;; x++)
			;
	}
	usleep(50000); /* the neighbours are running by now */
}

static int revoke_one(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps)
{
	volatile uint8_t *page;
	long ps = sysconf(_SC_PAGESIZE);

	(void)sleeps;
	solo_start(self);
	page = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return -errno;
	for (size_t i = 0; i < WARMUP + g->iters; i++) {
		page[0] = (uint8_t)i;
		uint64_t t0 = now_ns();

		if (madvise((void *)page, (size_t)ps, MADV_DONTNEED))
			return -errno;
		if (i >= WARMUP)
			ns[i - WARMUP] = now_ns() - t0;
	}
	munmap((void *)page, (size_t)ps);
	return 0;
}

static int giveup_role(const struct group *g, unsigned self, uint64_t *ns, bool move)
{
	solo_start(self);
	return floor_giveup(move, WARMUP, g->iters, ns);
}

static int giveup_one(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps)
{
	(void)sleeps;
	return giveup_role(g, self, ns, false);
}

static int take_one(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps)
{
	(void)sleeps;
	return giveup_role(g, self, ns, true);
}

static int eps(const struct group *g, unsigned self, int *ep)
{
	for (unsigned j = 0; j < g->n; j++) {
		ep[j] = -1;
		if (j != self && (ep[j] = floor_ep(g->fd[self][j])) < 0)
			return ep[j];
	}
	return 0;
}

/* Process 0 asks 1, which asks 2, ..., the last answers 0 with a page; with two processes,
 * 1 answers 0 itself: the plain round trip. */
static int relay(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps)
{
	static uint8_t page[4096];
	uint64_t q[2] = { 0, 0 }, junk = 0; /* the warm-up's sleeps */
	unsigned last = g->n - 1;
	int ep[GROUP_MAX], err = eps(g, self, ep);

	for (size_t i = 0; !err && i < WARMUP + g->iters; i++) {
		q[0] = i;
		if (self == 0) {
			uint64_t t0 = now_ns();

			err = floor_send_full(g->fd[0][1], q, sizeof(q));
			if (!err)
				err = floor_recv_full(g->fd[0][last], ep[last], page, sizeof(page),
						      g->spin_ns, i >= WARMUP ? sleeps : &junk);
			if (i >= WARMUP)
				ns[i - WARMUP] = now_ns() - t0;
			continue;
		}
		err = floor_recv_full(g->fd[self][self - 1], ep[self - 1], q, sizeof(q), g->spin_ns,
				      sleeps);
		if (!err && q[0] != i)
			err = -EPROTO;
		if (!err && self < last)
			err = floor_send_full(g->fd[self][self + 1], q, sizeof(q));
		else if (!err)
			err = floor_send_full(g->fd[self][0], page, sizeof(page));
	}
	return err;
}

/* Process 0 asks every other process at once and waits for every answer. */
static int fanout(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps)
{
	uint64_t q[2] = { 0, 0 }, a[2], junk = 0; /* the warm-up's sleeps */
	int ep[GROUP_MAX], err = eps(g, self, ep);

	for (size_t i = 0; !err && i < WARMUP + g->iters; i++) {
		q[0] = i;
		if (self == 0) {
			uint64_t t0 = now_ns();

			for (unsigned j = 1; !err && j < g->n; j++)
				err = floor_send_full(g->fd[0][j], q, sizeof(q));
			for (unsigned j = 1; !err && j < g->n; j++) {
				err = floor_recv_full(g->fd[0][j], ep[j], a, sizeof(a), g->spin_ns,
						      i >= WARMUP ? sleeps : &junk);
				if (!err && a[0] != i)
					err = -EPROTO;
			}
			if (i >= WARMUP)
				ns[i - WARMUP] = now_ns() - t0;
			continue;
		}
		err = floor_recv_full(g->fd[self][0], ep[0], a, sizeof(a), g->spin_ns, sleeps);
		if (!err && a[0] != i)
			err = -EPROTO;
		if (!err)
			err = floor_send_full(g->fd[self][0], a, sizeof(a));
	}
	return err;
}

/* Process 0's releases of barrier @b, in one system call; what a send left (a send the
 * kernel did not take, a full socket, part of one), one by one. */
static int release_batch(const struct group *g, struct uring *u, const uint64_t *b)
{
	struct uring_send v[GROUP_MAX];
	int err;

	for (unsigned j = 1; j < g->n; j++)
		v[j - 1] = (struct uring_send){ .fd = g->fd[0][j], .buf = b, .len = sizeof(*b) };
	err = uring_send(u, v, g->n - 1);
	if (err && err != -EAGAIN && err != -ENOMEM)
		return err;
	err = 0;
	for (unsigned j = 1; !err && j < g->n; j++) {
		ssize_t r = v[j - 1].res;

		if (r < 0 && r != -EAGAIN && r != -ECANCELED)
			return (int)r;
		if (r < (ssize_t)sizeof(*b))
			err = floor_send_full(g->fd[0][j], (const uint8_t *)b + (r > 0 ? r : 0),
					      sizeof(*b) - (size_t)(r > 0 ? r : 0));
	}
	return err;
}

/* Back-to-back barriers; process 0 times each from the end of the one before. @kind: BAR_*. */
enum { BAR_CENTRAL, BAR_DISSEM, BAR_BATCH };

static int barrier(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps,
		   int kind)
{
	uint64_t last = 0, e, junk = 0, *sl = &junk; /* the warm-up's sleeps go to junk */
	int ep[GROUP_MAX], err = eps(g, self, ep);
	bool dissem = kind == BAR_DISSEM;
	struct uring u = { .fd = -1 };

	if (!err && kind == BAR_BATCH && self == 0)
		err = uring_open(&u, GROUP_MAX); /* the caller checked that it can */

	for (uint64_t b = 0; !err && b < WARMUP + g->iters; b++) {
		if (b == WARMUP)
			sl = sleeps;
		if (dissem) {
			for (unsigned d = 1; !err && d < g->n; d <<= 1) {
				unsigned to = (self + d) % g->n, from = (self + g->n - d) % g->n;

				err = floor_send_full(g->fd[self][to], &b, sizeof(b));
				if (!err)
					err = floor_recv_full(g->fd[self][from], ep[from], &e,
							      sizeof(e), g->spin_ns, sl);
				if (!err && e != b)
					err = -EPROTO;
			}
		} else if (self == 0) {
			for (unsigned j = 1; !err && j < g->n; j++) {
				err = floor_recv_full(g->fd[0][j], ep[j], &e, sizeof(e), g->spin_ns,
						      sl);
				if (!err && e != b)
					err = -EPROTO;
			}
			if (kind == BAR_BATCH)
				err = release_batch(g, &u, &b);
			for (unsigned j = 1; !err && kind != BAR_BATCH && j < g->n; j++)
				err = floor_send_full(g->fd[0][j], &b, sizeof(b));
		} else {
			err = floor_send_full(g->fd[self][0], &b, sizeof(b));
			if (!err)
				err = floor_recv_full(g->fd[self][0], ep[0], &e, sizeof(e),
						      g->spin_ns, sl);
			if (!err && e != b)
				err = -EPROTO;
		}
		if (self == 0) {
			uint64_t t = now_ns();

			if (b >= WARMUP)
				ns[b - WARMUP] = t - last;
			last = t;
		}
	}
	uring_close(&u);
	return err;
}

static int bar_central(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps)
{
	return barrier(g, self, ns, sleeps, BAR_CENTRAL);
}

static int bar_dissem(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps)
{
	return barrier(g, self, ns, sleeps, BAR_DISSEM);
}

static int bar_batch(const struct group *g, unsigned self, uint64_t *ns, uint64_t *sleeps)
{
	return barrier(g, self, ns, sleeps, BAR_BATCH);
}

/* Whether this process may set up an io_uring (floor_barrier8_batch is left out if not). */
static bool uring_ok(void)
{
	struct uring u;
	int err = uring_open(&u, GROUP_MAX);

	if (err) {
		warnx_("no io_uring here (%s): floor_barrier8_batch left out", strerror(-err));
		return false;
	}
	uring_close(&u);
	return true;
}

/* ------------------------------------------------------------------------------------------
 * The figures.
 */

static int one(struct sink *s, struct group *g, const char *name, role_fn fn, int spin_us,
	       uint64_t *ns, double msgs, double bytes, const char *note)
{
	struct result r;
	uint64_t sleeps = 0;
	int err = g->spinners ? 0 : mesh(g);

	if (!err)
		err = run(g, fn, ns, &sleeps);
	if (err) {
		warnx_("group floor %s: %s", name, strerror(-err));
		return err;
	}
	result_init(&r, name, g->n, spin_us);
	summarize(&r, ns, g->iters);
	r.msgs_per_op = msgs;
	r.bytes_per_op = bytes;
	r.wakeups_per_op = (double)sleeps / (double)g->iters;
	snprintf(r.note, sizeof(r.note), "%s", note);
	sink_emit(s, &r);
	return 0;
}

static void place(struct group *g, unsigned n, const int *cpu, unsigned ncpu,
		  const unsigned *node)
{
	memset(g->fd, -1, sizeof(g->fd));
	g->n = n;
	g->spinners = false;
	for (unsigned i = 0; i < GROUP_MAX; i++)
		g->cpu[i] = i < n && ncpu ? cpu[(node ? node[i] : i) % ncpu] : -1;
}

int group_floors(const int *cpu, unsigned ncpu, int poll_us, size_t iters, struct sink *s)
{
	static const unsigned third[] = { 0, 2, 1 }; /* requester, home, owner: the node ids */
	uint64_t *ns = xcalloc(iters, sizeof(*ns));
	int cpus[GROUP_MAX], ncpus = allowed_cpus(cpus, GROUP_MAX);
	struct group g = { .iters = iters };
	int err = 0;

	/* Revocation and giving a page up: node 0's CPU, the others idle; then a busy process on
	 * each of them. The move is measured only where the kernel has it (Linux 6.8). */
	static const struct {
		const char *name;
		role_fn fn;
		const char *what;
	} solo[] = {
		{ "floor_revoke", revoke_one, "MADV_DONTNEED of a written page" },
		{ "floor_giveup", giveup_one, "a written page given up: write-protect, read "
					      "(/proc/self/mem), MADV_DONTNEED" },
		{ "floor_take", take_one, "a written page given up: one UFFDIO_MOVE (slots "
					  "emptied 64 at a time)" },
	};
	/* Without the move floor_take is left out: -ENOTSUP, the kernel has no UFFDIO_MOVE (the
	 * (info) line says so); any other failure is one of the measurement, reported, and
	 * returned once the other floors, which do not need the move, are taken. */
	int probe = floor_giveup(true, 1, 0, NULL);
	bool can_move = probe == 0;

	if (probe && probe != -ENOTSUP)
		warnx_("cannot measure UFFDIO_MOVE: %s", strerror(-probe));

	for (size_t i = 0; i < sizeof(solo) / sizeof(solo[0]) && !err; i++) {
		char nm[40], note[160];

		if (solo[i].fn == take_one && !can_move)
			continue;
		place(&g, 1, cpu, ncpu, NULL);
		g.spinners = true;
		snprintf(note, sizeof(note), "%s, every other CPU idle", solo[i].what);
		err = one(s, &g, solo[i].name, solo[i].fn, 0, ns, 0, 0, note);
		if (!err && ncpus > 1) {
			unsigned n = 1;

			for (int k = 0; k < ncpus && n < GROUP_MAX; k++) /* all CPUs but 0's */
				if (g.cpu[0] >= 0 ? cpus[k] != g.cpu[0] : k > 0)
					g.cpu[n++] = g.cpu[0] >= 0 ? cpus[k] : -1;
			g.n = n;
			snprintf(nm, sizeof(nm), "%s_busy", solo[i].name);
			snprintf(note, sizeof(note), "%s, a process busy on every other CPU",
				 solo[i].what);
			err = one(s, &g, nm, solo[i].fn, 0, ns, 0, 0, note);
		}
	}
	for (int sleep = 0; sleep < 2 && !err; sleep++) {
		int spin = sleep ? 0 : poll_us;
		const char *sfx = sleep ? "_sleep" : "";
		char nm[40];

		g.spin_ns = (int64_t)spin * 1000;
		place(&g, 2, cpu, ncpu, NULL);
		snprintf(nm, sizeof(nm), "floor_relay2%s", sfx);
		err = one(s, &g, nm, relay, spin, ns, 2, 16 + 4096,
			  "16 B request, 4 KiB answer, 2 processes (nodes 0 and 1's CPUs)");
		place(&g, 3, cpu, ncpu, third);
		snprintf(nm, sizeof(nm), "floor_relay3%s", sfx);
		if (!err)
			err = one(s, &g, nm, relay, spin, ns, 3, 32 + 4096,
				  "16 B request passed on, 4 KiB answer (3-node cluster's CPUs)");
		place(&g, 4, cpu, ncpu, NULL);
		snprintf(nm, sizeof(nm), "floor_fanout4%s", sfx);
		if (!err)
			err = one(s, &g, nm, fanout, spin, ns, 6, 6 * 16,
				  "16 B to 3 processes, 16 B back from each (4-node cluster's CPUs)");
		place(&g, BAR_N, cpu, ncpu, NULL);
		snprintf(nm, sizeof(nm), "floor_barrier8_central%s", sfx);
		if (!err)
			err = one(s, &g, nm, bar_central, spin, ns, 2 * (BAR_N - 1),
				  2 * (BAR_N - 1) * 8, "8 processes, back-to-back, timed on 0");
		place(&g, BAR_N, cpu, ncpu, NULL);
		snprintf(nm, sizeof(nm), "floor_barrier8_batch%s", sfx);
		if (!err && uring_ok())
			err = one(s, &g, nm, bar_batch, spin, ns, 2 * (BAR_N - 1),
				  2 * (BAR_N - 1) * 8, "8 processes, releases in one system call");
		place(&g, BAR_N, cpu, ncpu, NULL);
		snprintf(nm, sizeof(nm), "floor_barrier8_dissem%s", sfx);
		if (!err)
			err = one(s, &g, nm, bar_dissem, spin, ns, 3 * BAR_N, 3 * BAR_N * 8,
				  "8 processes, 3 rounds, back-to-back, timed on 0");
	}
	free(ns);
	return err ? err : probe == -ENOTSUP ? 0 : probe;
}
