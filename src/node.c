/* SPDX-License-Identifier: MIT */
/*
 * node.c - the service thread of a node: one epoll loop over the userfaultfd, the peer
 * sockets and an eventfd through which application threads reach it (barrier, close). It
 * owns the protocol engine and carries out the engine's actions with userfaultfd ioctls and
 * socket writes. Application threads never run protocol code: they only fault and wait in
 * the kernel.
 *
 * Latency: waking a sleeping thread on another CPU costs 30-50 us on the VMs we run on, more
 * than everything else on the fault path. So after any activity the loop keeps polling with
 * a zero timeout for spin_us before it sleeps in epoll_wait() (see docs/PERFORMANCE.md).
 */
#define LOG_PREFIX "node: "
#include "node.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "os/log.h"
#include "os/net.h"
#include "os/uffd_compat.h"

#define EV_UFFD (UDSM_MAX_NODES + 1u)
#define EV_WAKE (UDSM_MAX_NODES + 2u)

static inline void *page_addr(const struct udsm *d, uint64_t page)
{
	return d->base + page * d->ps;
}

/* ------------------------------------------------------------------------------------------
 * Engine actions.
 */

static int out_reserve(struct peer *p, size_t n)
{
	if (p->out_off == p->out_len)
		p->out_off = p->out_len = 0;
	if (p->out_len + n <= p->out_cap)
		return 0;
	if (p->out_off) {
		memmove(p->out, p->out + p->out_off, p->out_len - p->out_off);
		p->out_len -= p->out_off;
		p->out_off = 0;
		if (p->out_len + n <= p->out_cap)
			return 0;
	}
	size_t ncap = p->out_cap ? p->out_cap : 65536;
	while (ncap < p->out_len + n)
		ncap *= 2;
	uint8_t *nb = realloc(p->out, ncap);
	if (!nb)
		return -ENOMEM;
	p->out = nb;
	p->out_cap = ncap;
	return 0;
}

static void op_send(void *ctx, unsigned dst, const struct wire_msg *m, const void *data)
{
	struct udsm *d = ctx;
	struct peer *p = &d->peers[dst];

	if (p->fd < 0)
		return; /* lost: the engine learns it (or has learnt it) through eng_peer_lost */
	if (out_reserve(p, WIRE_HDR_LEN + m->len)) {
		log_err("out of memory queueing %s to node %u", wire_type_name(m->type), dst);
		return;
	}
	wire_encode_hdr(p->out + p->out_len, m);
	if (m->len)
		memcpy(p->out + p->out_len + WIRE_HDR_LEN, data, m->len);
	p->out_len += WIRE_HDR_LEN + m->len;
	d->dirty |= (uint64_t)1 << dst;
	NODE_STAT_ADD(d, msgs_sent, 1);
	if (ulog_enabled(UDSM_LOG_DEBUG))
		log_debug("node %u -> %u: %s page %llu arg %llu flags %#x", d->self, dst,
			  wire_type_name(m->type), (unsigned long long)m->page,
			  (unsigned long long)m->arg, m->flags);
}

/*
 * Hold: a page just handed to a waiting thread is kept for hold_ns before a FETCH or INV may
 * take it away again. Without it, a thread spinning on a page another node writes asks for
 * it right after every grant, and the writer, woken but not yet running, loses the page
 * before its store and faults again: the page bounces without progress. Holding back a
 * message only delays one link's delivery, which the protocol must tolerate anyway.
 */
static void mark_fresh(struct udsm *d, uint64_t page)
{
	if (d->hold_ns) {
		d->fresh[page % 256].page = page;
		d->fresh[page % 256].until = net_now_ns() + d->hold_ns;
	}
}

static uint64_t fresh_until(const struct udsm *d, uint64_t page)
{
	const struct fresh *f = &d->fresh[page % 256];

	return f->page == page ? f->until : 0;
}

/*
 * Fencing. Some events leave this node unable to keep its promises: the application unmapped
 * or moved (part of) the region, or dropped a page it held (MADV_DONTNEED, MADV_FREE...) so
 * that the only copy of the latest contents is gone, or the kernel refused to install a page.
 * The node then leaves the cluster the way a crashed node does: every connection is closed
 * (its peers lose exactly what only it had, as with a crash), every page here becomes lost,
 * and the application's later accesses to the region raise SIGBUS instead of reading stale or
 * invented data. The decision can be taken inside an engine callback, where the engine must
 * not be re-entered, so it is recorded (fence_later) and carried out by the service loop.
 */
static void fence_later(struct udsm *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fence_later(struct udsm *d, const char *fmt, ...)
{
	va_list ap;

	if (d->fence_pending || d->fenced)
		return;
	va_start(ap, fmt);
	vsnprintf(d->fence_why, sizeof(d->fence_why), fmt, ap);
	va_end(ap);
	d->fence_pending = true;
}

/* Page operations after a fence may meet an unmapped region: nothing depends on them. */
static inline int fenced_ok(const struct udsm *d, int err)
{
	return d->fenced ? 0 : err;
}

/*
 * Installs are batched: consecutive pages installed with the same protection in one event
 * batch (a burst of read-ahead replies, typically) are staged and copied in with a single
 * UFFDIO_COPY, which also wakes their waiters once. Every other page operation, and the end
 * of the batch, first flushes the staged run, so the kernel sees the operations in exactly
 * the order the engine issued them.
 */
static int install_one(struct udsm *d, uint64_t page, const void *data, size_t len, bool wp)
{
	size_t off = 0, done;
	uint64_t replaced = UINT64_MAX;
	int err = 0;

	while (off < len) {
		uint64_t at;

		err = uffd_copy(&d->uffd, (uint8_t *)page_addr(d, page) + off,
				data ? (const uint8_t *)data + off : NULL, len - off, wp, &done);
		off += done;
		if (!err)
			break;
		at = page + off / d->ps;
		if (err != -EEXIST || replaced == at)
			break;
		/*
		 * A page is present although the protocol says Invalid. It cannot come from us
		 * (every drop is synchronous), so something else populated it; our copy is the
		 * coherent one: discard that page and go on from it. Pages before it in the run
		 * are installed (and maybe already written): they are left alone.
		 */
		log_warn("page %llu was present while Invalid; replacing it", (unsigned long long)at);
		uffd_drop(page_addr(d, at), d->ps);
		replaced = at;
	}
	stats_installed(d->stats, page, data, len / d->ps); /* waiters woken: latency */
	if (err && !d->fenced) {
		/* The engine believes these pages present: going on would leave threads waiting
		 * on them forever or break coherence. The region was unmapped or the kernel is out
		 * of memory: this node cannot take part any more. */
		fence_later(d, "cannot install page %llu: %s",
			    (unsigned long long)(page + off / d->ps), strerror(-err));
	}
	return 0;
}

static void installs_flush(struct udsm *d)
{
	if (!d->run_n)
		return;
	install_one(d, d->run_first, d->run_buf, d->run_n * d->ps, d->run_wp);
	d->run_n = 0;
}

static int op_install(void *ctx, uint64_t page, const void *data, bool writable)
{
	struct udsm *d = ctx;
	bool wp = !writable;

	mark_fresh(d, page);
	if (!d->run_buf)
		return install_one(d, page, data, d->ps, wp);
	if (d->run_n && (page != d->run_first + d->run_n || wp != d->run_wp ||
			 d->run_n == RUN_MAX))
		installs_flush(d);
	if (!d->run_n) {
		d->run_first = page;
		d->run_wp = wp;
	}
	if (data)
		memcpy(d->run_buf + d->run_n * d->ps, data, d->ps);
	else
		memset(d->run_buf + d->run_n * d->ps, 0, d->ps);
	d->run_n++;
	return 0;
}

static int op_protect(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;

	installs_flush(d);

	return fenced_ok(d, uffd_wp(&d->uffd, page_addr(d, page), d->ps, true));
}

static int op_unprotect(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;

	installs_flush(d);

	mark_fresh(d, page);
	int err = fenced_ok(d, uffd_wp(&d->uffd, page_addr(d, page), d->ps, false));

	stats_woken(d->stats, page); /* an upgrade's waiters woken: latency */
	return err;
}

static int op_drop(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;

	installs_flush(d);

	return fenced_ok(d, uffd_drop(page_addr(d, page), d->ps));
}

/*
 * The engine reads a page it holds to send it (FETCH reply, home serving from its own
 * mapping). A plain load would fault, and wait forever on this very thread, if the
 * application dropped the page behind our back; a read through /proc/self/mem fails instead
 * (the kernel does not wait on userfaultfd for it). Costs one system call per page sent from
 * the mapping, about as much as the copy it replaces (docs/PERFORMANCE.md).
 */
static const void *op_page_data(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;
	ssize_t r;

	installs_flush(d);
	if (d->memfd < 0)
		return page_addr(d, page);
	do
		r = pread(d->memfd, d->safe_buf, d->ps, (off_t)(uintptr_t)page_addr(d, page));
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)d->ps) {
		fence_later(d, "page %llu, which this node holds, is gone from the region "
			    "(dropped or unmapped by the application)", (unsigned long long)page);
		memset(d->safe_buf, 0, d->ps); /* never sent: the fence closes every link first */
	}
	return d->safe_buf;
}

/* Whether @page is mapped in the region right now (read through /proc/self/mem). */
static bool page_present(struct udsm *d, uint64_t page)
{
	uint8_t b;
	ssize_t r;

	if (d->memfd < 0)
		return true;
	do
		r = pread(d->memfd, &b, 1, (off_t)(uintptr_t)page_addr(d, page));
	while (r < 0 && errno == EINTR);
	return r == 1;
}

static int op_wake(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;

	installs_flush(d);

	return fenced_ok(d, uffd_wake(&d->uffd, page_addr(d, page), d->ps));
}

static int op_poison(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;

	installs_flush(d);
	stats_forget(d->stats, page); /* no latency sample for a lost page */
	int err = uffd_poison(&d->uffd, page_addr(d, page), d->ps);

	if (err == -ENOTSUP)
		return 0; /* logged once at open: the thread stays blocked until close */
	return fenced_ok(d, err);
}

static void op_barrier_done(void *ctx, int err)
{
	struct udsm *d = ctx;

	installs_flush(d);

	pthread_mutex_lock(&d->mu);
	d->bar = BAR_DONE;
	d->bar_result = err;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static void op_log(void *ctx, int level, const char *msg)
{
	struct udsm *d = ctx;

	ulog(level, "engine: node %u: %s", d->self, msg);
}

static const struct eng_ops node_ops = {
	.send = op_send,
	.install = op_install,
	.protect = op_protect,
	.unprotect = op_unprotect,
	.drop = op_drop,
	.page_data = op_page_data,
	.wake = op_wake,
	.poison = op_poison,
	.barrier_done = op_barrier_done,
	.log = op_log,
	.moved = stats_op_moved,
	.written = stats_op_written,
};

int node_engine_init(struct udsm *d)
{
	struct eng_config c = {
		.self = d->self,
		.nodes = d->nodes,
		.npages = d->npages,
		.page_size = (uint32_t)d->ps,
		.readahead = d->readahead,
		.no_migratory = !d->migratory,
		.ops = &node_ops,
		.ctx = d,
	};

	return eng_create(&c, &d->eng);
}

/* ------------------------------------------------------------------------------------------
 * Peers.
 */

void node_peer_close(struct peer *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	wire_dec_free(&p->dec);
	free(p->out);
	p->out = NULL;
	p->out_len = p->out_off = p->out_cap = 0;
	p->pollout = false;
}

static void peer_gone(struct udsm *d, unsigned n, int level, const char *why, bool left)
{
	struct peer *p = &d->peers[n];

	if (p->fd < 0)
		return;
	ulog(level, LOG_PREFIX "node %u: %s node %u (%s)", d->self,
	     level == UDSM_LOG_INFO ? "peer left:" : "lost", n, why);
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, p->fd, NULL);
	if (p->has_held) {
		p->has_held = false;
		d->nheld--;
	}
	node_peer_close(p);
	d->dirty &= ~((uint64_t)1 << n);
	if (left)
		eng_peer_left(d->eng, n);
	else
		eng_peer_lost(d->eng, n);
}

static void peer_lost(struct udsm *d, unsigned n, int level, const char *why)
{
	peer_gone(d, n, level, why, false);
}

/* Write queued output; register for EPOLLOUT if the socket is full. */
static void peer_flush(struct udsm *d, unsigned n)
{
	struct peer *p = &d->peers[n];

	while (p->fd >= 0 && p->out_off < p->out_len) {
		ssize_t w = send(p->fd, p->out + p->out_off, p->out_len - p->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w > 0) {
			p->out_off += (size_t)w;
			NODE_STAT_ADD(d, bytes_sent, (uint64_t)w);
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			if (!p->pollout) {
				struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = n };

				epoll_ctl(d->epfd, EPOLL_CTL_MOD, p->fd, &ev);
				p->pollout = true;
			}
			return;
		}
		char why[96];
		snprintf(why, sizeof(why), "send: %s", strerror(w < 0 ? errno : EPIPE));
		peer_lost(d, n, UDSM_LOG_WARN, why);
		return;
	}
	d->dirty &= ~((uint64_t)1 << n);
	if (p->fd >= 0 && p->pollout) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = n };

		epoll_ctl(d->epfd, EPOLL_CTL_MOD, p->fd, &ev);
		p->pollout = false;
	}
}

void node_fence(struct udsm *d)
{
	if (d->fenced)
		return;
	d->fenced = true;
	d->fence_pending = false;
	ulog(UDSM_LOG_ERR, LOG_PREFIX "node %u: %s: this node leaves the cluster as if it had "
	     "crashed; accesses to the region raise SIGBUS from now on", d->self, d->fence_why);
	installs_flush(d);
	for (unsigned n = 0; n < d->nodes; n++) {
		struct peer *p = &d->peers[n];

		if (p->fd < 0)
			continue;
		/* Nothing queued may go out: it may have been read from a dropped page. */
		p->out_off = p->out_len;
		peer_lost(d, n, UDSM_LOG_INFO, "this node is fenced");
	}
	eng_fence(d->eng);
	installs_flush(d);
	if (uffd_poison(&d->uffd, d->base, d->size) && !d->uffd.poison)
		log_warn("node %u: without UFFDIO_POISON, threads that access the region block "
			 "until udsm_close()", d->self);
}

static void flush_all(struct udsm *d)
{
	/* Losing a peer while flushing runs the engine again, which may queue messages to
	 * others and stage installs (a GET_M that waited for the dead node completes): loop
	 * until both are clean, so nothing is left staged when the loop goes to sleep. */
	do {
		installs_flush(d);
		while (d->dirty)
			peer_flush(d, (unsigned)__builtin_ctzll(d->dirty));
	} while (d->run_n);
}

/* Hand every complete message in @n's decoder to the engine. */
static int deliver(struct udsm *d, unsigned n, const struct wire_msg *m);

static void peer_drain(struct udsm *d, unsigned n)
{
	struct peer *p = &d->peers[n];
	struct wire_msg m;
	int err = -EAGAIN;

	if (p->has_held) {
		if (net_now_ns() < p->held_until)
			return;
		p->has_held = false;
		d->nheld--;
		if (deliver(d, n, &p->held))
			return;
	}
	while (p->fd >= 0 && (err = wire_dec_next(&p->dec, &m)) == 0) {
		NODE_STAT_ADD(d, msgs_recv, 1);
		if ((m.type == WIRE_FETCH || m.type == WIRE_INV) && m.page < d->npages) {
			uint64_t until = fresh_until(d, m.page);

			if (until && net_now_ns() < until) {
				p->held = m; /* no payload: nothing points into the decoder */
				p->held_until = until;
				p->has_held = true;
				d->nheld++;
				return;
			}
		}
		if (deliver(d, n, &m))
			return;
	}
	if (p->fd >= 0 && err != -EAGAIN) {
		char why[160];

		snprintf(why, sizeof(why), "malformed stream, connection closed: %s", p->dec.why);
		peer_lost(d, n, UDSM_LOG_ERR, why);
	}
}

/* One message to the engine; nonzero if the peer is gone afterwards. */
static int deliver(struct udsm *d, unsigned n, const struct wire_msg *m)
{
	char why[256];

	if (m->type == WIRE_BYE) {
		peer_gone(d, n, UDSM_LOG_INFO, "it closed its node", true);
		return 1;
	}
	if (ulog_enabled(UDSM_LOG_DEBUG))
		log_debug("node %u <- %u: %s page %llu arg %llu flags %#x", d->self, n,
			  wire_type_name(m->type), (unsigned long long)m->page,
			  (unsigned long long)m->arg, m->flags);
	if (!eng_recv(d->eng, n, m))
		return 0;
	snprintf(why, sizeof(why), "protocol error, connection closed: %s", eng_why(d->eng));
	peer_lost(d, n, UDSM_LOG_ERR, why);
	return 1;
}

/* Deliver the held messages whose time has come (and what follows them on their link). */
static void release_held(struct udsm *d)
{
	for (unsigned k = 0; d->nheld && k < d->nodes; k++)
		if (d->peers[k].has_held)
			peer_drain(d, k);
}

static void peer_readable(struct udsm *d, unsigned n)
{
	struct peer *p = &d->peers[n];

	/* While a message of this peer is held, leave its bytes in the socket: TCP flow
	 * control then bounds what piles up, however long the hold. */
	for (int i = 0; i < 4 && p->fd >= 0 && !p->has_held; i++) {
		uint8_t *buf;
		size_t room;
		ssize_t r;
		int err = wire_dec_space(&p->dec, 65536, &buf, &room);

		if (err) {
			char why[96];

			snprintf(why, sizeof(why), "decoder: %s", udsm_strerror(err));
			peer_lost(d, n, UDSM_LOG_ERR, why);
			return;
		}
		/* Straight into the decoder: a page payload is copied once less. */
		r = recv(p->fd, buf, room, MSG_DONTWAIT);
		if (r == 0) {
			peer_lost(d, n, UDSM_LOG_WARN, "connection closed");
			return;
		}
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			char why[96];
			snprintf(why, sizeof(why), "recv: %s", strerror(errno));
			peer_lost(d, n, UDSM_LOG_WARN, why);
			return;
		}
		NODE_STAT_ADD(d, bytes_recv, (uint64_t)r);
		wire_dec_commit(&p->dec, (size_t)r);
		peer_drain(d, n);
		if ((size_t)r < room)
			return;
	}
}

/* ------------------------------------------------------------------------------------------
 * Faults.
 */

static void uffd_readable(struct udsm *d)
{
	struct uffd_msg msgs[64];

	for (;;) {
		ssize_t r = read(d->uffd.fd, msgs, sizeof(msgs));

		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_perror("read from userfaultfd");
			return;
		}
		for (size_t i = 0; i < (size_t)r / sizeof(msgs[0]); i++) {
			const struct uffd_msg *m = &msgs[i];
			uint64_t addr, page;
			bool write;

			if (m->event == UFFD_EVENT_UNMAP || m->event == UFFD_EVENT_REMAP) {
				fence_later(d, "the application %s part of the region",
					    m->event == UFFD_EVENT_UNMAP ? "unmapped" : "moved");
				continue;
			}
			if (m->event != UFFD_EVENT_PAGEFAULT) {
				log_warn("unexpected userfaultfd event %u", m->event);
				continue;
			}
			addr = m->arg.pagefault.address;
			if (addr < (uintptr_t)d->base || addr >= (uintptr_t)d->base + d->size) {
				log_warn("fault at %#llx outside the region", (unsigned long long)addr);
				continue;
			}
			page = (addr - (uintptr_t)d->base) / d->ps;
			write = m->arg.pagefault.flags &
				(UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP);
			if (!(m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) && !d->fenced) {
				/* A missing-page fault on a page we hold is stale (it was queued
				 * before the install) unless the application dropped the page
				 * itself: then its contents are gone, and treating the fault as
				 * stale would wake the thread into the same fault forever. */
				int s = eng_state(d->eng, page);

				/* The engine counts a staged install as done: put it in first,
				 * or the page reads as absent (a race, not the application). */
				if (s == ENG_S || s == ENG_M || s == ENG_SM_A)
					installs_flush(d);
				if ((s == ENG_S || s == ENG_M || s == ENG_SM_A) &&
				    !page_present(d, page)) {
					fence_later(d, "the application dropped page %llu (%s here) "
						    "from the region", (unsigned long long)page,
						    eng_state_name(s));
					continue;
				}
			}
			NODE_STAT_ADD(d, faults, 1);
			if (write)
				NODE_STAT_ADD(d, write_faults, 1);
			else
				NODE_STAT_ADD(d, read_faults, 1);
			stats_fault(d->stats, page, eng_state(d->eng, page), write); /* latency */
			eng_fault(d->eng, page, write);
		}
		if ((size_t)r < sizeof(msgs))
			return;
	}
}

/* ------------------------------------------------------------------------------------------
 * Commands from application threads, and the loop.
 */

static void commands(struct udsm *d)
{
	uint64_t v;
	bool start_barrier = false;

	if (read(d->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_perror("read from eventfd");
	pthread_mutex_lock(&d->mu);
	if (d->bar == BAR_REQUESTED) {
		d->bar = BAR_WAITING;
		start_barrier = true;
	}
	pthread_mutex_unlock(&d->mu);
	stats_poll(d); /* a report SIGUSR2 asked for */
	if (start_barrier) {
		int err = eng_barrier(d->eng);

		if (err)
			op_barrier_done(d, err);
	}
}

static bool should_quit(struct udsm *d)
{
	bool q;

	pthread_mutex_lock(&d->mu);
	q = d->quit;
	pthread_mutex_unlock(&d->mu);
	return q;
}

/* Leave: tell every peer, and give the goodbyes up to a second to go out. */
static void say_bye(struct udsm *d)
{
	int64_t deadline = net_deadline(1000);

	for (unsigned n = 0; n < d->nodes; n++) {
		struct wire_msg m = { .type = WIRE_BYE, .src = (uint16_t)d->self };

		if (d->peers[n].fd >= 0)
			op_send(d, n, &m, NULL);
	}
	for (unsigned n = 0; n < d->nodes; n++) {
		struct peer *p = &d->peers[n];

		while (p->fd >= 0 && p->out_off < p->out_len && net_now_ms() < deadline) {
			ssize_t w = send(p->fd, p->out + p->out_off, p->out_len - p->out_off,
					 MSG_NOSIGNAL);
			if (w > 0) {
				p->out_off += (size_t)w;
			} else if (w < 0 && errno == EAGAIN) {
				struct pollfd pf = { .fd = p->fd, .events = POLLOUT };
				poll(&pf, 1, 50);
			} else {
				break;
			}
		}
	}
}

static void *service_main(void *arg)
{
	struct udsm *d = arg;
	struct epoll_event evs[64];
	uint64_t spin_ns = d->spin_us > 0 ? (uint64_t)d->spin_us * 1000u : 0, idle_since = 0;
	bool spinning = false;
	char name[16];

	snprintf(name, sizeof(name), "udsm/%u", d->self);
	pthread_setname_np(pthread_self(), name);

	/* Messages that arrived with the last handshake bytes are already in the decoders. */
	for (unsigned n = 0; n < d->nodes; n++)
		if (d->peers[n].fd >= 0)
			peer_drain(d, n);
	flush_all(d);

	for (;;) {
		int n = epoll_wait(d->epfd, evs, 64, spinning ? 0 : -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_perror("epoll_wait");
			break;
		}
		if (n == 0) {
			/*
			 * Between empty polls, give the CPU to whoever wants it: on a small or
			 * shared host, an application thread (or another node) that shares our
			 * CPU would otherwise wait out the whole spin (docs/PERFORMANCE.md).
			 */
			sched_yield();
			if (d->nheld) {
				release_held(d);
				flush_all(d);
				idle_since = net_now_ns();
			} else if (net_now_ns() - idle_since > spin_ns) {
				spinning = false;
			}
			continue;
		}
		if (!spinning)
			NODE_STAT_ADD(d, wakeups, 1);
		for (int i = 0; i < n; i++) {
			uint32_t k = evs[i].data.u32;

			if (k == EV_UFFD)
				uffd_readable(d);
			else if (k == EV_WAKE)
				commands(d);
			else if (k < d->nodes && d->peers[k].fd >= 0) {
				if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
					peer_readable(d, k);
				if (d->peers[k].fd >= 0 && (evs[i].events & EPOLLOUT))
					d->dirty |= (uint64_t)1 << k;
			}
		}
		if (d->fence_pending)
			node_fence(d);
		release_held(d);
		flush_all(d);
		if (should_quit(d))
			break;
		if (spin_ns || d->nheld) {
			spinning = true;
			idle_since = net_now_ns();
		}
	}
	say_bye(d);
	pthread_mutex_lock(&d->mu);
	d->stopped = true;
	if (d->bar == BAR_WAITING || d->bar == BAR_REQUESTED) {
		d->bar = BAR_DONE;
		d->bar_result = UDSM_ECLOSED;
	}
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

static int ep_add(struct udsm *d, int fd, uint32_t key)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = key };

	return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

int node_start(struct udsm *d)
{
	int err;

	d->run_buf = aligned_alloc(d->ps, RUN_MAX * d->ps); /* NULL: installs go one by one */
	d->safe_buf = aligned_alloc(d->ps, d->ps);
	if (!d->safe_buf)
		return -ENOMEM;
	d->memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	if (d->memfd < 0)
		log_warn("cannot open /proc/self/mem (%s): a page the application drops from the "
			 "region behind udsm's back can hang this node", strerror(errno));
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->epfd < 0 || d->evfd < 0)
		return -errno;
	if ((err = ep_add(d, d->uffd.fd, EV_UFFD)) || (err = ep_add(d, d->evfd, EV_WAKE)))
		return err;
	for (unsigned n = 0; n < d->nodes; n++)
		if (d->peers[n].fd >= 0 && (err = ep_add(d, d->peers[n].fd, n)))
			return err;
	err = pthread_create(&d->thread, NULL, service_main, d);
	if (err)
		return -err;
	d->thread_started = true;
	return 0;
}

static void kick(struct udsm *d)
{
	uint64_t one = 1;

	if (write(d->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_perror("write to eventfd");
}

void node_stop(struct udsm *d)
{
	if (!d->thread_started)
		return;
	pthread_mutex_lock(&d->mu);
	d->quit = true;
	pthread_mutex_unlock(&d->mu);
	kick(d);
	pthread_join(d->thread, NULL);
	d->thread_started = false;
}

int node_barrier(struct udsm *d)
{
	uint64_t t0 = net_now_ns(); /* stats: barrier latency */
	int err;

	pthread_mutex_lock(&d->mu);
	if (d->quit || d->stopped) {
		pthread_mutex_unlock(&d->mu);
		return UDSM_ECLOSED;
	}
	if (d->bar != BAR_IDLE) {
		pthread_mutex_unlock(&d->mu);
		return -EBUSY;
	}
	d->bar = BAR_REQUESTED;
	pthread_mutex_unlock(&d->mu);
	kick(d);
	pthread_mutex_lock(&d->mu);
	while (d->bar != BAR_DONE)
		pthread_cond_wait(&d->cv, &d->mu);
	err = d->bar_result;
	d->bar = BAR_IDLE;
	pthread_mutex_unlock(&d->mu);
	if (!err)
		stats_barrier(d->stats, net_now_ns() - t0);
	return err;
}
