/* SPDX-License-Identifier: MIT */
/*
 * floor.c - the floors: what the same machine, in the same run, with the same thread placement
 * and the same polling policy, needs for the raw operations udsm is built from.
 *
 *  - TCP: a 16-byte request answered with 4 KiB (a page) or 16 bytes, TCP_NODELAY, between two
 *    processes (the node 0 and node 1 processes of the cluster, so over loopback in fork mode
 *    and over the real network when the nodes were started by hand);
 *  - userfaultfd: a MISSING read fault resolved with UFFDIO_COPY by a handler thread;
 *  - both at once (fault -> handler -> TCP fetch -> UFFDIO_COPY): the smallest remote fault;
 *  - the same with one page-table change at the responder before it answers (it
 *    write-protects a page of its own that it wrote, with UFFDIO_WRITEPROTECT), as an owner
 *    does when a read miss downgrades its page: what the protocol's own work costs on this
 *    machine;
 *  - for the scan: one bulk TCP stream, the page-table work per page in runs, and what new
 *    memory costs (the scan's reader fills memory it never used);
 *  - the smallest remote fault resolved in the faulting thread itself (UFFD_FEATURE_SIGBUS:
 *    the fault is a SIGBUS whose handler fetches the page and copies it in), the design
 *    that saves a miss its two cross-thread hand-offs, measured rather than guessed.
 *
 * Every waiting side polls like udsm's service thread (src/node.c): after its last activity it
 * calls epoll_wait() with a zero timeout until spin_us have passed, then sleeps in
 * epoll_wait(). A wait that ended in the sleep is counted, so a floor that slept shows it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"
#include "os/uffd_compat.h" /* the constants Debian 12's 6.1 headers lack */

#define WAIT_MS 20000 /* a wait this long means the other side is gone */
#define WARMUP 64
#define MAX_REPLY 65536

enum { OP_ECHO = 1, OP_BYE = 2, OP_STOP = 3, OP_ECHO_WP = 4, OP_STREAM = 5 };
#define STREAM_CHUNK (256u << 10) /* bytes per send() of OP_STREAM: a read-ahead set's size */

struct req {
	uint32_t op;
	uint32_t len; /* reply length */
	uint64_t seq;
};

static uint8_t reply_buf[MAX_REPLY];

static void init_reply(void)
{
	for (size_t i = 0; i < sizeof(reply_buf); i++)
		reply_buf[i] = (uint8_t)(i * 7 + 1);
}

/*
 * Wait until something registered in @ep is ready: spin with zero-timeout epoll_wait() for
 * @spin_ns (0: do not spin), then sleep. Returns 0 (caught while spinning), 1 (had to sleep),
 * or a negative errno (-ETIMEDOUT after WAIT_MS).
 */
static int floor_wait_in(int ep, int64_t spin_ns)
{
	struct epoll_event ev;
	int r;

	if (spin_ns > 0) {
		uint64_t t0 = now_ns();

		do {
			r = epoll_wait(ep, &ev, 1, 0);
			if (r > 0)
				return 0;
			if (r < 0 && errno != EINTR)
				return -errno;
		} while ((int64_t)(now_ns() - t0) <= spin_ns);
	}
	for (;;) {
		r = epoll_wait(ep, &ev, 1, WAIT_MS);
		if (r > 0)
			return 1;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

int floor_ep(int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		return -errno;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
		int err = -errno;

		close(ep);
		return err;
	}
	return ep;
}

/* Receive exactly @len bytes: wait (spin, then sleep) before every read, as udsm does. */
int floor_recv_full(int fd, int ep, void *buf, size_t len, int64_t spin_ns, uint64_t *sleeps)
{
	size_t got = 0;

	while (got < len) {
		int w = floor_wait_in(ep, spin_ns);

		if (w < 0)
			return w;
		*sleeps += (uint64_t)w;
		for (;;) {
			ssize_t r = recv(fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);

			if (r > 0) {
				got += (size_t)r;
				if (got == len)
					return 0;
				continue;
			}
			if (r == 0)
				return -EPIPE;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -errno;
		}
	}
	return 0;
}

int floor_send_full(int fd, const void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t w = send(fd, (const uint8_t *)buf + off, len - off, MSG_NOSIGNAL);

		if (w > 0) {
			off += (size_t)w;
		} else if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = { .fd = fd, .events = POLLOUT };

			if (poll(&pf, 1, WAIT_MS) == 0)
				return -ETIMEDOUT;
		} else if (!(w < 0 && errno == EINTR)) {
			return w < 0 ? -errno : -EPIPE;
		}
	}
	return 0;
}

void floor_tune(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int parse(const char *addr, struct sockaddr_in *sa)
{
	char host[128];
	const char *c = strrchr(addr, ':');

	if (!c || (size_t)(c - addr) >= sizeof(host))
		return -EINVAL;
	memcpy(host, addr, (size_t)(c - addr));
	host[c - addr] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)atoi(c + 1));
	if (inet_pton(AF_INET, host, &sa->sin_addr) == 1)
		return 0;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, NULL, &hints, &ai))
		return -EHOSTUNREACH;
	sa->sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
	freeaddrinfo(ai);
	return 0;
}

static int dial(const char *addr)
{
	struct sockaddr_in sa;
	int fd, err = parse(addr, &sa);

	if (err)
		return err;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(fd);
		return err;
	}
	floor_tune(fd);
	return fd;
}

int floor_local_ip(const char *toward, char *out, size_t len)
{
	struct sockaddr_in sa;
	socklen_t slen = sizeof(sa);
	int fd, err = parse(toward, &sa);

	if (err)
		return err;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &slen)) {
		err = -errno;
		close(fd);
		return err;
	}
	close(fd);
	if (!inet_ntop(AF_INET, &sa.sin_addr, out, (socklen_t)len))
		return -errno;
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * The responder.
 */

struct floor_srv {
	int lfd, spin_us, cpu, err;
	pthread_t th;
};

static int uffd_open_any(void);

/* The responder's page for OP_ECHO_WP: registered for write-protect faults, present. */
struct wp_page {
	int fd;
	uint8_t *page;
	size_t ps;
};

static int wp_page_init(struct wp_page *w)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING |
					       UFFDIO_REGISTER_MODE_WP };
	struct uffdio_copy c = { 0 };

	w->ps = (size_t)sysconf(_SC_PAGESIZE);
	w->fd = uffd_open_any();
	if (w->fd < 0)
		return w->fd;
	w->page = mmap(NULL, w->ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->page == MAP_FAILED) {
		w->page = NULL;
		return -errno;
	}
	reg.range.start = (uintptr_t)w->page;
	reg.range.len = w->ps;
	c.dst = (uintptr_t)w->page;
	c.src = (uintptr_t)reply_buf;
	c.len = w->ps;
	if (ioctl(w->fd, UFFDIO_API, &api) || ioctl(w->fd, UFFDIO_REGISTER, &reg) ||
	    ioctl(w->fd, UFFDIO_COPY, &c))
		return -errno;
	return 0;
}

/*
 * One page-table change, as an owner's downgrade makes it: write-protect a page this process
 * wrote. wp_page_dirty() then makes it writable again and stores to it, after the answer,
 * so that every protect revokes write access from a dirty page. (Toggling the protection of
 * a page nobody writes, as this floor did first, halves the count of real revocations and
 * measures a cheaper change: on the PVM guest of docs/PERFORMANCE.md, revoking write access
 * from a written page costs ~40 us more while the other vCPU is busy, a clean page nothing.)
 */
static int wp_page_protect(struct wp_page *w)
{
	struct uffdio_writeprotect p = {
		.range = { .start = (uintptr_t)w->page, .len = w->ps },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	return ioctl(w->fd, UFFDIO_WRITEPROTECT, &p) ? -errno : 0;
}

static int wp_page_dirty(struct wp_page *w)
{
	struct uffdio_writeprotect p = {
		.range = { .start = (uintptr_t)w->page, .len = w->ps },
		.mode = 0,
	};

	if (ioctl(w->fd, UFFDIO_WRITEPROTECT, &p))
		return -errno;
	((volatile uint8_t *)w->page)[0]++;
	return 0;
}

static void wp_page_free(struct wp_page *w)
{
	if (w->page)
		munmap(w->page, w->ps);
	if (w->fd >= 0)
		close(w->fd);
}

static int serve(struct floor_srv *s, int fd, bool *stop)
{
	int64_t spin_ns = s->spin_us > 0 ? (int64_t)s->spin_us * 1000 : 0;
	uint64_t sleeps = 0;
	int ep = floor_ep(fd), err = 0;
	struct wp_page wp = { .fd = -1 };

	if (ep < 0)
		return ep;
	for (;;) {
		struct req q;

		err = floor_recv_full(fd, ep, &q, sizeof(q), spin_ns, &sleeps);
		if (err == -EPIPE) {
			err = 0;
			break;
		}
		if (err)
			break;
		if (q.op == OP_BYE)
			break;
		if (q.op == OP_STOP) {
			*stop = true;
			break;
		}
		if (q.op == OP_STREAM) {
			/* @seq bytes as fast as the socket takes them, STREAM_CHUNK per send(). */
			static uint8_t chunk[STREAM_CHUNK];

			for (uint64_t off = 0; off < q.seq && !err; off += STREAM_CHUNK) {
				uint64_t left = q.seq - off;

				err = floor_send_full(fd, chunk,
						      left < STREAM_CHUNK ? left : STREAM_CHUNK);
			}
			if (err)
				break;
			continue;
		}
		if ((q.op != OP_ECHO && q.op != OP_ECHO_WP) || q.len > MAX_REPLY) {
			err = -EPROTO;
			break;
		}
		if (q.op == OP_ECHO_WP) {
			if (!wp.page && (err = wp_page_init(&wp)))
				break;
			if ((err = wp_page_protect(&wp)))
				break;
		}
		/* The reply starts with the CPU the responder runs on: the client counts how
		 * often both ends shared a CPU (wake-affine placement, see PERFORMANCE.md). */
		if (q.len >= 4) {
			uint8_t hdr[MAX_REPLY];
			int32_t cpu = sched_getcpu();

			memcpy(hdr, reply_buf, q.len);
			memcpy(hdr, &cpu, sizeof(cpu));
			err = floor_send_full(fd, hdr, q.len);
		} else {
			err = floor_send_full(fd, reply_buf, q.len);
		}
		if (!err && q.op == OP_ECHO_WP)
			err = wp_page_dirty(&wp); /* after the answer: off the measured path */
		if (err)
			break;
	}
	wp_page_free(&wp);
	close(ep);
	return err;
}

static void *srv_main(void *arg)
{
	struct floor_srv *s = arg;
	bool stop = false;

	pin_self(s->cpu);
	while (!stop) {
		struct pollfd pf = { .fd = s->lfd, .events = POLLIN };
		int fd, r = poll(&pf, 1, 60000);

		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			s->err = r ? -errno : -ETIMEDOUT;
			break;
		}
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		floor_tune(fd);
		s->err = serve(s, fd, &stop);
		close(fd);
		if (s->err)
			break;
	}
	return NULL;
}

int floor_srv_start(struct floor_srv **out, const char *host, int spin_us, int cpu, char *addr,
		    size_t alen)
{
	struct floor_srv *s = xcalloc(1, sizeof(*s));
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sa);
	int one = 1, err;

	init_reply();
	s->spin_us = spin_us;
	s->cpu = cpu;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		goto fail;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(s->lfd, 4) ||
	    getsockname(s->lfd, (struct sockaddr *)&sa, &slen))
		goto fail;
	snprintf(addr, alen, "%s:%u", host, ntohs(sa.sin_port));
	if ((err = pthread_create(&s->th, NULL, srv_main, s))) {
		errno = err;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	err = -errno;
	if (s->lfd >= 0)
		close(s->lfd);
	free(s);
	return err;
}

int floor_srv_join(struct floor_srv *s)
{
	int err;

	pthread_join(s->th, NULL);
	err = s->err;
	close(s->lfd);
	free(s);
	return err;
}

int floor_srv_stop(const char *addr)
{
	struct req q = { .op = OP_STOP };
	int fd = dial(addr), err;

	if (fd < 0)
		return fd;
	err = floor_send_full(fd, &q, sizeof(q));
	close(fd);
	return err;
}

/* ------------------------------------------------------------------------------------------
 * TCP round trips.
 */

/* A connection to the responder at @addr and an epoll set for it: 0 or -errno. */
static int dial_ep(const char *addr, int *fd, int *ep)
{
	*fd = dial(addr);
	if (*fd < 0)
		return *fd;
	*ep = floor_ep(*fd);
	if (*ep < 0) {
		int err = *ep;

		close(*fd);
		*fd = *ep = -1; /* nothing for the caller's cleanup to close again */
		return err;
	}
	return 0;
}

/* Tell the responder this connection is done (it waits for the next one), then close it and
 * its epoll set; -1s are skipped. */
static void hang_up(int fd, int ep)
{
	struct req q = { .op = OP_BYE };

	if (fd >= 0) {
		floor_send_full(fd, &q, sizeof(q));
		close(fd);
	}
	if (ep >= 0)
		close(ep);
}

struct tcp_job {
	const char *addr;
	int spin_us, cpu, err;
	uint32_t reply;
	size_t n;
	uint64_t *ns, sleeps, same_cpu;
};

static void *tcp_main(void *arg)
{
	struct tcp_job *j = arg;
	int64_t spin_ns = j->spin_us > 0 ? (int64_t)j->spin_us * 1000 : 0;
	static uint8_t buf[MAX_REPLY];
	struct req q = { .op = OP_ECHO, .len = j->reply };
	int fd, ep;

	pin_self(j->cpu);
	if ((j->err = dial_ep(j->addr, &fd, &ep)))
		return NULL;
	for (size_t i = 0; i < j->n + WARMUP && !j->err; i++) {
		uint64_t sl = 0, t0 = now_ns();

		q.seq = i;
		j->err = floor_send_full(fd, &q, sizeof(q));
		if (!j->err)
			j->err = floor_recv_full(fd, ep, buf, j->reply, spin_ns, &sl);
		if (i >= WARMUP) {
			int32_t cpu;

			j->ns[i - WARMUP] = now_ns() - t0;
			j->sleeps += sl;
			memcpy(&cpu, buf, sizeof(cpu));
			if (j->reply >= 4 && cpu == sched_getcpu())
				j->same_cpu++;
		}
	}
	if (!j->err && j->reply >= 4 && memcmp(buf + 4, reply_buf + 4, j->reply - 4))
		j->err = -EBADMSG;
	hang_up(fd, ep);
	return NULL;
}

int floor_tcp(const char *addr, int spin_us, int cpu, uint32_t reply, size_t n, uint64_t *ns,
	      uint64_t *sleeps, uint64_t *same_cpu)
{
	struct tcp_job j = {
		.addr = addr, .spin_us = spin_us, .cpu = cpu, .reply = reply, .n = n, .ns = ns,
	};
	pthread_t th;
	int err;

	init_reply();
	if (reply > MAX_REPLY)
		return -EINVAL;
	if ((err = pthread_create(&th, NULL, tcp_main, &j)))
		return -err;
	pthread_join(th, NULL);
	*sleeps = j.sleeps;
	*same_cpu = j.same_cpu;
	return j.err;
}

/* Bulk TCP throughput: the responder streams the bytes, a thread pinned to the client's CPU
 * receives them into a buffer of STREAM_CHUNK bytes. Also the receiving thread's CPU time per
 * byte in that run: what taking a page off a socket costs a reader at least. */
struct stream_job {
	const char *addr;
	int cpu, reps, err;
	uint64_t bytes;
	double mb_s;   /* the best of reps */
	double cpu_ns; /* per byte, in the run of mb_s */
};

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *stream_main(void *arg)
{
	static uint8_t buf[STREAM_CHUNK];
	struct stream_job *j = arg;
	struct req q = { .op = OP_STREAM, .seq = j->bytes };
	uint64_t sl = 0;
	int fd, ep;

	pin_self(j->cpu);
	if ((j->err = dial_ep(j->addr, &fd, &ep)))
		return NULL;
	for (int k = 0; k < j->reps && !j->err; k++) {
		uint64_t t0 = now_ns(), c0 = thread_cpu_ns();

		j->err = floor_send_full(fd, &q, sizeof(q));
		for (uint64_t got = 0; got < j->bytes && !j->err; got += STREAM_CHUNK) {
			uint64_t n = j->bytes - got < STREAM_CHUNK ? j->bytes - got : STREAM_CHUNK;

			j->err = floor_recv_full(fd, ep, buf, n, 0, &sl);
		}
		double v = (double)j->bytes / ((double)(now_ns() - t0) / 1e9) / 1e6;

		if (!j->err && v > j->mb_s) {
			j->mb_s = v;
			j->cpu_ns = (double)(thread_cpu_ns() - c0) / (double)j->bytes;
		}
	}
	hang_up(fd, ep);
	return NULL;
}

int floor_tcp_stream(const char *addr, int cpu, uint64_t bytes, int reps, double *mb_s,
		     double *cpu_ns)
{
	struct stream_job j = { .addr = addr, .cpu = cpu, .reps = reps, .bytes = bytes };
	pthread_t th;
	int err;

	if ((err = pthread_create(&th, NULL, stream_main, &j)))
		return -err;
	pthread_join(th, NULL);
	*mb_s = j.mb_s;
	*cpu_ns = j.cpu_ns;
	return j.err;
}

/*
 * The page-table work a scan needs per page, in runs of FLOOR_RUN pages as udsm batches it: the
 * reader's UFFDIO_COPY, the owner's UFFDIO_WRITEPROTECT and /proc/self/mem read, and a drop
 * (MADV_DONTNEED) for reference. Measured in a thread pinned to @cpu, on a private region.
 */
#define FLOOR_RUN 256u
#define FLOOR_RUNS 32u

struct ops_job {
	int cpu, err;
	double us[4]; /* per page: copy, write-protect, read, drop */
};

/* UFFDIO_COPY of @buf (@run bytes) into each run of [@a, @a + @len), with @mode; 0 or -errno
 * at the first failure. */
static int copy_runs(int fd, uint8_t *a, size_t len, size_t run, const void *buf, uint64_t mode)
{
	for (size_t off = 0; off < len; off += run) {
		struct uffdio_copy c = { .dst = (uintptr_t)(a + off), .src = (uintptr_t)buf,
					 .len = run, .mode = mode };

		if (ioctl(fd, UFFDIO_COPY, &c))
			return -errno;
	}
	return 0;
}

static void *ops_main(void *arg)
{
	struct ops_job *j = arg;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), run = FLOOR_RUN * ps, len = run * FLOOR_RUNS;
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING |
					       UFFDIO_REGISTER_MODE_WP };
	uint8_t *a = NULL, *buf = NULL;
	int fd = -1, mfd = -1;
	uint64_t t[5], t_wp;

	pin_self(j->cpu);
	fd = uffd_open_any();
	a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	buf = aligned_alloc(ps, run);
	mfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || a == MAP_FAILED || !buf || mfd < 0) {
		j->err = fd < 0 ? fd : -ENOMEM;
		goto out;
	}
	reg.range.start = (uintptr_t)a;
	reg.range.len = len;
	if (ioctl(fd, UFFDIO_API, &api) || ioctl(fd, UFFDIO_REGISTER, &reg)) {
		j->err = -errno;
		goto out;
	}
	memset(buf, 0x5a, run);
	for (int k = 0; k < 4; k++)
		j->us[k] = INFINITY;
	for (int rep = 0; rep < 3 && !j->err; rep++) { /* the best of 3 passes, per operation */
		t[0] = now_ns();
		j->err = copy_runs(fd, a, len, run, buf, 0);
		t[1] = now_ns();
		/* Written, as an owner's pages are: the write-protect revokes write access. */
		for (size_t i = 0; i < FLOOR_RUNS * FLOOR_RUN && !j->err; i++)
			a[i * ps] ^= 1;
		t_wp = now_ns(); /* the stores are part of no figure */
		for (size_t i = 0; i < FLOOR_RUNS && !j->err; i++) {
			struct uffdio_writeprotect w = {
				.range = { .start = (uintptr_t)(a + i * run), .len = run },
				.mode = UFFDIO_WRITEPROTECT_MODE_WP,
			};

			if (ioctl(fd, UFFDIO_WRITEPROTECT, &w))
				j->err = -errno;
		}
		t[2] = now_ns();
		for (size_t i = 0; i < FLOOR_RUNS && !j->err; i++)
			if (pread(mfd, buf, run, (off_t)(uintptr_t)(a + i * run)) != (ssize_t)run)
				j->err = -EIO;
		t[3] = now_ns();
		for (size_t i = 0; i < FLOOR_RUNS && !j->err; i++)
			if (madvise(a + i * run, run, MADV_DONTNEED)) /* missing again: next pass */
				j->err = -errno;
		t[4] = now_ns();
		for (int k = 0; k < 4; k++)
			j->us[k] = fmin(j->us[k], (double)(t[k + 1] - (k == 1 ? t_wp : t[k])) /
						    1e3 / (double)(FLOOR_RUN * FLOOR_RUNS));
	}
out:
	if (mfd >= 0)
		close(mfd);
	free(buf);
	if (a && a != MAP_FAILED)
		munmap(a, len);
	if (fd >= 0)
		close(fd);
	return NULL;
}

int floor_page_ops(int cpu, double us[4])
{
	struct ops_job j = { .cpu = cpu };
	pthread_t th;
	int err;

	if ((err = pthread_create(&th, NULL, ops_main, &j)))
		return -err;
	pthread_join(th, NULL);
	memcpy(us, j.us, sizeof(j.us));
	return j.err;
}

/*
 * What new memory costs: UFFDIO_COPY, in runs of FLOOR_RUN pages, into @len bytes of a mapping
 * this process never used (us[0]), and again into the same mapping once its pages were dropped
 * and the kernel has them at hand (us[1]); then one store per page into another new mapping
 * (us[2]), what any program pays for the first touch of memory. The first and last depend on
 * where the kernel takes its free pages from: a guest whose free memory the host has taken
 * back (free page reporting, ballooning) pays the host for every one of them. Last (us[3]),
 * the first load from each page once it was installed read-only (UFFDIO_COPY_MODE_WP, as a
 * read miss installs it) into memory at hand: what a reader's application thread pays per
 * page it has not touched before, on a guest whose hypervisor builds its view of the page
 * tables on first use (on the PVM guest 1.3-1.9 us, and 4.5-6 for a page installed writable).
 * Then (us[4]) a load of every word of those pages, now mapped, each checked against what was
 * installed: the scan's own reading of a page.
 * Measured in the calling thread, after everything it measures is already faulted in.
 */
int floor_new_memory(size_t len, double us[5])
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), run = FLOOR_RUN * ps, pages;
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING |
					       UFFDIO_REGISTER_MODE_WP };
	uint8_t *a = MAP_FAILED, *b = MAP_FAILED, *buf = NULL;
	int fd, err = 0;

	len = (len + run - 1) / run * run;
	pages = len / ps;
	fd = uffd_open_any();
	if (fd < 0)
		return fd;
	a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	buf = aligned_alloc(ps, run);
	if (a == MAP_FAILED || b == MAP_FAILED || !buf) {
		err = -ENOMEM;
		goto out;
	}
	memset(buf, 0x5a, run);
	reg.range.start = (uintptr_t)a;
	reg.range.len = len;
	if (ioctl(fd, UFFDIO_API, &api) || ioctl(fd, UFFDIO_REGISTER, &reg)) {
		err = -errno;
		goto out;
	}
	for (int pass = 0; pass < 2 && !err; pass++) {
		uint64_t t0 = now_ns();

		err = copy_runs(fd, a, len, run, buf, 0);
		us[pass] = (double)(now_ns() - t0) / 1e3 / (double)pages;
		if (!err && madvise(a, len, MADV_DONTNEED))
			err = -errno;
	}
	/* Read-only into the pages just dropped, then the timed first loads. */
	if (!err && !(err = copy_runs(fd, a, len, run, buf, UFFDIO_COPY_MODE_WP))) {
		uint64_t t0 = now_ns();
		uint8_t bad = 0;

		for (size_t off = 0; off < len; off += ps)
			bad |= ((volatile uint8_t *)a)[off] ^ 0x5a;
		us[3] = (double)(now_ns() - t0) / 1e3 / (double)pages;
		t0 = now_ns();
		for (size_t off = 0; off < len; off += ps) {
			const volatile uint64_t *w = (const volatile uint64_t *)(a + off);

			for (size_t i = 0; i < ps / 8; i++)
				bad |= (uint8_t)(w[i] != 0x5a5a5a5a5a5a5a5aull);
		}
		us[4] = (double)(now_ns() - t0) / 1e3 / (double)pages;
		if (bad)
			err = -EIO;
	}
	if (!err) {
		uint64_t t0 = now_ns();

		for (size_t off = 0; off < len; off += ps)
			((volatile uint8_t *)b)[off] = 1;
		us[2] = (double)(now_ns() - t0) / 1e3 / (double)pages;
	}
out:
	free(buf);
	if (b != MAP_FAILED)
		munmap(b, len);
	if (a != MAP_FAILED)
		munmap(a, len);
	close(fd);
	return err;
}

/* ------------------------------------------------------------------------------------------
 * userfaultfd.
 */

static int uffd_open_any(void)
{
	int fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK), dev;

	if (fd >= 0)
		return fd;
	fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd >= 0)
		return fd;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		fd = -errno;
	close(dev);
	return fd;
}

#define GIVEUP_SLOTS 64 /* as node.c's NODE_SCRATCH_PAGES */

/*
 * An owner giving up a page it wrote, per page in @ns (after @warmup untimed ones): either
 * write-protect, read through /proc/self/mem and MADV_DONTNEED (@move false: what udsm does
 * where the kernel has no UFFDIO_MOVE), or one UFFDIO_MOVE into a slot of a scratch area, the
 * slots emptied GIVEUP_SLOTS at a time in the page that finds them full (@move: node.c's
 * op_take()). Each page is installed (UFFDIO_COPY) and written first, untimed. In the calling
 * thread; -ENOTSUP if the kernel lacks UFFDIO_MOVE.
 */
int floor_giveup(bool move, size_t warmup, size_t n, uint64_t *ns)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), used = 0;
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | (move ? UFFD_FEATURE_MOVE : 0),
	};
	uint8_t *page = MAP_FAILED, *scratch = MAP_FAILED, *src = NULL, *buf = NULL;
	int fd = uffd_open_any(), mfd = -1, err = 0;

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api)) {
		err = errno == EINVAL && move ? -ENOTSUP : -errno;
		goto out;
	}
	page = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	scratch = mmap(NULL, GIVEUP_SLOTS * ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	src = aligned_alloc(ps, ps);
	buf = aligned_alloc(ps, ps);
	if (!move) /* the old way reads the page through it; the move needs nothing */
		mfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	if (page == MAP_FAILED || scratch == MAP_FAILED || !src || !buf || (!move && mfd < 0)) {
		err = -ENOMEM;
		goto out;
	}
	madvise(page, ps, MADV_NOHUGEPAGE);
	madvise(scratch, GIVEUP_SLOTS * ps, MADV_NOHUGEPAGE);
	memset(src, 0x5a, ps);
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)page, .len = ps },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	}, sreg = {
		.range = { .start = (uintptr_t)scratch, .len = GIVEUP_SLOTS * ps },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(fd, UFFDIO_REGISTER, &reg) || (move && ioctl(fd, UFFDIO_REGISTER, &sreg))) {
		err = -errno;
		goto out;
	}
	if (move && !(sreg.ioctls & (1ULL << _UFFDIO_MOVE))) {
		err = -ENOTSUP;
		goto out;
	}
	for (size_t i = 0; i < warmup + n && !err; i++) {
		struct uffdio_copy c = { .dst = (uintptr_t)page, .src = (uintptr_t)src, .len = ps };

		if (ioctl(fd, UFFDIO_COPY, &c)) {
			err = -errno;
			break;
		}
		page[0] ^= 1; /* written, as an owner's page is */
		uint64_t t0 = now_ns();

		if (move) {
			struct uffdio_move m = { .src = (uintptr_t)page, .len = ps,
						 .mode = UFFDIO_MOVE_MODE_DONTWAKE };

			if (used == GIVEUP_SLOTS) {
				if (madvise(scratch, GIVEUP_SLOTS * ps, MADV_DONTNEED))
					err = -errno;
				used = 0;
			}
			m.dst = (uintptr_t)(scratch + used++ * ps);
			if (!err && ioctl(fd, UFFDIO_MOVE, &m))
				err = -errno;
		} else {
			struct uffdio_writeprotect w = {
				.range = { .start = (uintptr_t)page, .len = ps },
				.mode = UFFDIO_WRITEPROTECT_MODE_WP,
			};

			if (ioctl(fd, UFFDIO_WRITEPROTECT, &w))
				err = -errno;
			else if (pread(mfd, buf, ps, (off_t)(uintptr_t)page) != (ssize_t)ps)
				err = -EIO;
			else if (madvise(page, ps, MADV_DONTNEED))
				err = -errno;
		}
		if (i >= warmup)
			ns[i - warmup] = now_ns() - t0;
	}
out:
	if (fd >= 0)
		close(fd); /* first: an unmap of a registered range would wait for its reader */
	if (mfd >= 0)
		close(mfd);
	free(src);
	free(buf);
	if (page != MAP_FAILED)
		munmap(page, ps);
	if (scratch != MAP_FAILED)
		munmap(scratch, GIVEUP_SLOTS * ps);
	return err;
}

/* A userfaultfd with @features and a new anonymous region of @len bytes registered with it for
 * missing pages (@wp: filled, and registered for write-protect faults instead), in *@fd and
 * *@region. 0, or -errno (-ENOTSUP: a feature this kernel lacks);
 * what was made before a failure is left in *@fd and *@region (-1, MAP_FAILED if nothing) for
 * the caller's cleanup. */
static int uf_region(size_t len, uint64_t features, int *fd, uint8_t **region, bool wp)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	*region = MAP_FAILED;
	*fd = uffd_open_any();
	if (*fd < 0)
		return *fd;
	if (ioctl(*fd, UFFDIO_API, &api))
		return errno == EINVAL && features ? -ENOTSUP : -errno;
	*region = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (*region == MAP_FAILED)
		return -errno;
	madvise(*region, len, MADV_NOHUGEPAGE);
	if (wp) /* present before registering: only write-protect faults reach the handler */
		memset(*region, 0x5a, len);
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)*region, .len = len },
		.mode = wp ? UFFDIO_REGISTER_MODE_WP : UFFDIO_REGISTER_MODE_MISSING,
	};
	return ioctl(*fd, UFFDIO_REGISTER, &reg) ? -errno : 0;
}

struct uf {
	int fd, evfd, ep, spin_us, cpu, err, sock, sock_ep;
	bool owner_wp; /* the responder changes a page table before it answers */
	bool upgrade;  /* write faults on present write-protected pages, resolved by clearing it */
	bool fd_closed; /* the handler failed and closed the uffd, which wakes the faulter */
	size_t ps;
	uint8_t *src;
	uint64_t sleeps, faults;
};

/* The handler cannot go on: closing the uffd resolves every later fault with a zero page, so
 * the faulting thread sees a wrong value and stops instead of waiting forever. */
static void *uf_fail(struct uf *u, int err)
{
	__atomic_store_n(&u->err, err, __ATOMIC_RELEASE);
	close(u->fd);
	__atomic_store_n(&u->fd_closed, true, __ATOMIC_RELEASE);
	return NULL;
}

static void *uf_main(void *arg)
{
	struct uf *u = arg;
	int64_t spin_ns = u->spin_us > 0 ? (int64_t)u->spin_us * 1000 : 0;
	struct uffd_msg msgs[16];

	pin_self(u->cpu);
	for (;;) {
		int w = floor_wait_in(u->ep, spin_ns);
		uint64_t v;

		if (w < 0)
			return uf_fail(u, w);
		u->sleeps += (uint64_t)w;
		for (;;) {
			ssize_t r = read(u->fd, msgs, sizeof(msgs));

			if (r < 0) {
				if (errno != EAGAIN && errno != EINTR)
					return uf_fail(u, -errno);
				break;
			}
			for (size_t i = 0; i < (size_t)r / sizeof(msgs[0]); i++) {
				uint64_t a = msgs[i].arg.pagefault.address & ~(uint64_t)(u->ps - 1);
				struct uffdio_copy c = {
					.dst = a, .src = (uintptr_t)u->src, .len = u->ps,
				};

				if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
					continue;
				u->faults++;
				if (u->sock >= 0) {
					size_t want = u->upgrade ? 16 : u->ps;
					struct req q = { .op = u->owner_wp ? OP_ECHO_WP : OP_ECHO,
							 .len = (uint32_t)want };
					uint64_t sl = 0;
					int err = floor_send_full(u->sock, &q, sizeof(q));

					if (!err)
						err = floor_recv_full(u->sock, u->sock_ep, u->src,
								      want, spin_ns, &sl);
					u->sleeps += sl;
					if (err)
						return uf_fail(u, err);
				}
				if (u->upgrade) {
					struct uffdio_writeprotect wp = {
						.range = { .start = a, .len = u->ps }, .mode = 0,
					};

					if (ioctl(u->fd, UFFDIO_WRITEPROTECT, &wp))
						return uf_fail(u, -errno);
					continue;
				}
				if (ioctl(u->fd, UFFDIO_COPY, &c)) {
					struct uffdio_range rg = { .start = a, .len = u->ps };

					if (errno != EEXIST)
						return uf_fail(u, -errno);
					ioctl(u->fd, UFFDIO_WAKE, &rg);
				}
			}
		}
		if (read(u->evfd, &v, sizeof(v)) == sizeof(v))
			return NULL;
	}
}

int floor_uffd(int spin_us, int svc_cpu, const char *tcp_addr, int kind, size_t n,
	       uint64_t *ns, uint64_t *sleeps)
{
	bool up = kind == FLOOR_UF_UPGRADE;
	struct uf u = { .fd = -1, .evfd = -1, .ep = -1, .sock = -1, .sock_ep = -1 };
	struct epoll_event ev = { .events = EPOLLIN };
	size_t pages = n + WARMUP, len;
	uint8_t *region = MAP_FAILED;
	pthread_t th;
	bool started = false;
	uint64_t expect;
	int err = 0;

	init_reply();
	u.ps = (size_t)sysconf(_SC_PAGESIZE);
	u.spin_us = spin_us;
	u.cpu = svc_cpu;
	u.owner_wp = kind == FLOOR_UF_OWNER_WP && tcp_addr;
	u.upgrade = up;
	len = pages * u.ps;
	u.src = aligned_alloc(u.ps, u.ps);
	if (!u.src)
		return -ENOMEM;
	memset(u.src, 0x5a, u.ps);
	if (tcp_addr) /* the first 4 bytes carry the responder's CPU */
		memcpy(&expect, reply_buf, sizeof(expect));
	else
		memcpy(&expect, u.src, sizeof(expect));
	uint64_t mask = tcp_addr ? ~(uint64_t)0xffffffffu : ~(uint64_t)0;
	if ((err = uf_region(len, up ? UFFD_FEATURE_PAGEFAULT_FLAG_WP : 0, &u.fd, &region, up)))
		goto out;
	if (up) {
		/* Every page present and write-protected, as a Shared page of udsm's. */
		struct uffdio_writeprotect wp = {
			.range = { .start = (uintptr_t)region, .len = len },
			.mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};

		if (ioctl(u.fd, UFFDIO_WRITEPROTECT, &wp)) {
			err = -errno;
			goto out;
		}
	}
	u.evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u.ep = epoll_create1(EPOLL_CLOEXEC);
	if (u.evfd < 0 || u.ep < 0 || epoll_ctl(u.ep, EPOLL_CTL_ADD, u.fd, &ev) ||
	    epoll_ctl(u.ep, EPOLL_CTL_ADD, u.evfd, &ev)) {
		err = -errno;
		goto out;
	}
	if (tcp_addr && (err = dial_ep(tcp_addr, &u.sock, &u.sock_ep)))
		goto out;
	if ((err = -pthread_create(&th, NULL, uf_main, &u)))
		goto out;
	started = true;

	/* Descending, like the udsm workloads; each page is touched once. */
	for (size_t i = pages; i-- > 0;) {
		volatile uint64_t *a = (volatile uint64_t *)(region + i * u.ps);
		uint64_t t0, t1, v;

		if (up) {
			t0 = now_ns();
			*a = i; /* a write fault, resolved by clearing the protection */
			t1 = now_ns();
			v = *a == i && !__atomic_load_n(&u.err, __ATOMIC_ACQUIRE) ? expect : ~expect;
		} else {
			t0 = now_ns();
			v = *a;
			t1 = now_ns();
		}
		if ((v & mask) != (expect & mask)) {
			err = __atomic_load_n(&u.err, __ATOMIC_ACQUIRE);
			err = err ? err : -EBADMSG;
			break;
		}
		if (i < n)
			ns[i] = t1 - t0;
	}
out:
	if (started) {
		uint64_t one = 1;

		if (write(u.evfd, &one, sizeof(one)) < 0 && !err)
			err = -errno;
		pthread_join(th, NULL);
		if (!err)
			err = u.err;
		*sleeps = u.sleeps;
	}
	hang_up(u.sock, u.sock_ep);
	if (region != MAP_FAILED)
		munmap(region, len);
	if (u.ep >= 0)
		close(u.ep);
	if (u.evfd >= 0)
		close(u.evfd);
	if (u.fd >= 0 && !u.fd_closed)
		close(u.fd);
	free(u.src);
	return err;
}

/* ------------------------------------------------------------------------------------------
 * A fault resolved in the faulting thread: UFFD_FEATURE_SIGBUS turns a missing page into a
 * SIGBUS, whose handler fetches the page over TCP and copies it in; the access then retries.
 * One region and one handler at a time (the handler's state is static: a signal handler
 * has no argument).
 */

static struct {
	int uffd, sock, ep, err;
	int64_t spin_ns;
	uint8_t *region, *src;
	size_t len, ps;
	uint64_t sleeps;
	volatile sig_atomic_t counting;
	struct sigaction old;
} sb = { .uffd = -1, .sock = -1, .ep = -1 };

static void sb_handler(int sig, siginfo_t *si, void *uc)
{
	int saved = errno, err = sb.err;
	uintptr_t a = (uintptr_t)si->si_addr;
	struct req q = { .op = OP_ECHO, .len = (uint32_t)sb.ps };
	uint64_t sl = 0;

	(void)sig;
	(void)uc;
	if (a < (uintptr_t)sb.region || a >= (uintptr_t)sb.region + sb.len) {
		/* Not ours: the handler that was there before takes the retried access. */
		sigaction(SIGBUS, &sb.old, NULL);
		errno = saved;
		return;
	}
	a &= ~(uintptr_t)(sb.ps - 1);
	if (!err)
		err = floor_send_full(sb.sock, &q, sizeof(q));
	if (!err)
		err = floor_recv_full(sb.sock, sb.ep, sb.src, sb.ps, sb.spin_ns, &sl);
	if (sb.counting)
		sb.sleeps += sl; /* the warm-up's are not counted */
	if (!err) {
		struct uffdio_copy c = { .dst = a, .src = (uintptr_t)sb.src, .len = sb.ps,
					 .mode = UFFDIO_COPY_MODE_DONTWAKE };

		if (ioctl(sb.uffd, UFFDIO_COPY, &c) && errno != EEXIST)
			err = -errno;
	}
	if (err) {
		/* Never fault again on this page: a plain zero page, which the caller's check
		 * reports as the failure it is. */
		sb.err = err;
		if (mmap((void *)a, sb.ps, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
			signal(SIGBUS, SIG_DFL); /* the retried access dies rather than loops */
	}
	errno = saved;
}

int floor_fault_sigbus(int spin_us, const char *tcp_addr, size_t n, uint64_t *ns,
		       uint64_t *sleeps)
{
	struct sigaction sa = { .sa_sigaction = sb_handler, .sa_flags = SA_SIGINFO };
	size_t pages = n + WARMUP;
	uint64_t expect, mask = ~(uint64_t)0xffffffffu; /* the first 4 bytes: a CPU number */
	bool installed = false;
	int err = 0;

	init_reply();
	memcpy(&expect, reply_buf, sizeof(expect));
	sb.ps = (size_t)sysconf(_SC_PAGESIZE);
	sb.len = pages * sb.ps;
	sb.err = 0;
	sb.sleeps = 0;
	sb.counting = 0;
	sb.spin_ns = spin_us > 0 ? (int64_t)spin_us * 1000 : 0;
	sb.region = MAP_FAILED;
	sb.src = aligned_alloc(sb.ps, sb.ps);
	if (!sb.src)
		return -ENOMEM;
	if ((err = uf_region(sb.len, UFFD_FEATURE_SIGBUS, &sb.uffd, &sb.region, false)))
		goto out;
	if ((err = dial_ep(tcp_addr, &sb.sock, &sb.ep)))
		goto out;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &sb.old)) {
		err = -errno;
		goto out;
	}
	installed = true;
	for (size_t i = pages; i-- > 0;) {
		volatile uint64_t *a = (volatile uint64_t *)(sb.region + i * sb.ps);

		sb.counting = i < n;
		uint64_t t0 = now_ns(), v = *a, t1 = now_ns();

		if ((v & mask) != (expect & mask)) {
			err = sb.err ? sb.err : -EBADMSG;
			break;
		}
		if (i < n)
			ns[i] = t1 - t0;
	}
	*sleeps = sb.sleeps;
out:
	if (installed)
		sigaction(SIGBUS, &sb.old, NULL);
	hang_up(sb.sock, sb.ep);
	if (sb.region != MAP_FAILED)
		munmap(sb.region, sb.len);
	if (sb.uffd >= 0)
		close(sb.uffd);
	free(sb.src);
	sb.sock = sb.ep = sb.uffd = -1;
	return err;
}
