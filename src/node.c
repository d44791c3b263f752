/* SPDX-License-Identifier: MIT */
/*
 * node.c - the service thread of a node: one epoll loop over the userfaultfd, the peer
 * sockets and an eventfd through which application threads reach it (barrier, close). It
 * owns the protocol engine and carries out the engine's actions with userfaultfd ioctls and
 * writes to the peers' connections (conn.c), with flow control toward congested peers, and
 * heartbeats, a liveness bound and fencing (both described below). Application threads run
 * protocol code only inside a barrier, while the service thread sleeps and under its lock
 * (turn): a barrier's arrival and the answer on a lent socket (barrier_send(), loans);
 * otherwise they only fault and wait in the kernel.
 *
 * Latency: waking a sleeping thread on another CPU costs 30-50 us on some VMs, more than
 * everything else on the fault path; on others a polling CPU makes the peers' page-table
 * changes several times slower. The loop polls or sleeps as src/wait.h decides: by default it
 * measures both for its own requests and keeps the faster (docs/PERFORMANCE.md).
 */
#define LOG_PREFIX "node: "
#include "node.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "locks.h"
#include "os/cpu.h"
#include "os/futex.h"
#include "os/log.h"
#include "os/net.h"
#include "os/tsan.h"
#include "os/uffd_compat.h"
#include "wait.h"

#define BIT(n) ((uint64_t)1 << (n))
#define EV_UFFD (UDSM_MAX_NODES + 1u)
#define EV_WAKE (UDSM_MAX_NODES + 2u)
#define LEAVE_TIMEOUT_MS 10000 /* udsm_close(): longest hand-over without progress */

static inline void *page_addr(const struct udsm *d, uint64_t page)
{
	return d->base + page * d->ps;
}

/* Copy what the waiting strategy learnt for the statistics report (node.h, wait_view). */
static void wait_publish(struct udsm *d)
{
	const struct wait_learn *l[2] = { &d->wait.fault, &d->wait.barrier };

	for (int k = 0; k < 2; k++) {
		for (int m = 0; m < WAIT_MODES; m++) {
			__atomic_store_n(&d->wait_view.med_ns[k][m], l[k]->med[m], __ATOMIC_RELAXED);
			__atomic_store_n(&d->wait_view.n[k][m], l[k]->n[m], __ATOMIC_RELAXED);
		}
		__atomic_store_n(&d->wait_view.best[k], (uint8_t)wait_learnt(&d->wait, k),
				 __ATOMIC_RELAXED);
	}
}

/* Pages made available to the threads waiting on them: for the waiting strategy (wait.h). */
static void woken(struct udsm *d, uint64_t pages)
{
	if (wait_woken(&d->wait, net_now_ns(),
		       __atomic_load_n(&d->st.msgs_sent, __ATOMIC_RELAXED), pages))
		wait_publish(d);
}

/* ------------------------------------------------------------------------------------------
 * Engine actions.
 */

static void op_send(void *ctx, unsigned dst, const struct wire_msg *m, const void *data)
{
	struct udsm *d = ctx;
	struct peer *p = &d->peers[dst];
	struct wire_msg hinted;
	int err;

	if (p->fd < 0 || (d->doomed & BIT(dst)))
		return; /* lost: the engine learns it (or has learnt it) through eng_peer_lost */
	/* Polling for what this brings back: the peer may poll for our next (wait.h). Never on
	 * a heartbeat or a farewell: nothing comes back. The caller's hint is not kept. */
	hinted = *m;
	hinted.hint = m->type != WIRE_PING && m->type != WIRE_BYE && !d->ticking &&
			      wait_polling(&d->wait, net_now_ns()) ? WIRE_H_POLL : 0;
	m = &hinted;
	err = conn_queue(&p->io, m, data);
	if (err) {
		/*
		 * Never drop a message and go on: a thread would wait forever for its answer.
		 * The peer is lost instead, as soon as the engine returns (it cannot be
		 * re-entered from one of its own callbacks): see lose_doomed().
		 */
		ulog(UDSM_LOG_ERR, LOG_PREFIX "node %u: cannot queue %s to node %u: %s (%zu bytes "
		     "queued, bound %zu)", d->self, wire_type_name(m->type), dst,
		     err == -ENOBUFS ? "over the bound" : udsm_strerror(err),
		     conn_pending(&p->io), p->io.max);
		d->doomed |= BIT(dst);
		return;
	}
	d->dirty |= BIT(dst);
	d->tx_seen |= BIT(dst);
	NODE_STAT_ADD(d, msgs_sent, 1);
	if (ulog_enabled(UDSM_LOG_DEBUG))
		log_debug("node %u -> %u: %s page %llu arg %llu flags %#x", d->self, dst,
			  wire_type_name(m->type), (unsigned long long)m->page,
			  (unsigned long long)m->arg, m->flags);
}

/*
 * Hold (core/fresh.h): a page just handed to a waiting thread is kept for hold_ns before a
 * FETCH, FWD or INV may take it away again; one handed over writable, while it stays
 * Modified, until a thread has visibly made a store (fresh_done()), within
 * FRESH_WATCH_MAX x hold_ns. Holding back a message only delays one link's delivery, which
 * the protocol must tolerate anyway.
 */
/* @data: the bytes handed over (NULL: zeros), digested if @watch. */
static void mark_fresh(struct udsm *d, uint64_t page, bool watch, const void *data)
{
	watch = watch && d->memfd >= 0; /* no way to look: a plain hold */
	if (d->hold_ns)
		fresh_mark(&d->fresh, page, net_now_ns(), d->hold_ns, watch,
			   watch ? fresh_digest(data, d->ps) : 0);
}

static uint64_t fresh_end(struct udsm *d, uint64_t page)
{
	return fresh_until(&d->fresh, page, eng_state(d->eng, page) == ENG_M);
}

static bool page_read(struct udsm *d, uint64_t page, void *buf, size_t len);

/*
 * Whether the held request for @page may go ahead now, before its hold's end. The page is
 * read through /proc/self/mem, as op_page_data() reads it: a page the application dropped
 * or unmapped makes the read fail, where a load would fault on our own userfaultfd and never
 * return. Such a page, or no way to read it, leaves the request held. A read costs about
 * 2.4 us on a PVM guest, on the CPU the application thread needs to make its store: at most
 * one every FRESH_LOOK_NS per page.
 */
static bool fresh_done(struct udsm *d, uint64_t page)
{
	if (!fresh_watched(&d->fresh, page) || d->fenced || d->fence_pending || d->memfd < 0 ||
	    eng_state(d->eng, page) != ENG_M || (d->run_n && page - d->run_first < d->run_n) ||
	    !fresh_look_due(&d->fresh, page, net_now_ns()) ||
	    !page_read(d, page, d->look_buf, d->ps))
		return false;
	return fresh_look(&d->fresh, page, fresh_digest(d->look_buf, d->ps));
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
	uint64_t replaced = UINT64_MAX, t0 = net_now_ns();
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
	/* What installing costs: on a machine where new memory is slow (a guest whose host took
	 * its free memory back), this is most of a scan's time (docs/STATS.md). */
	__atomic_fetch_add(&d->install_ns, net_now_ns() - t0, __ATOMIC_RELAXED);
	__atomic_fetch_add(&d->installs, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&d->installed_pages, off / d->ps, __ATOMIC_RELAXED);
	stats_installed(d->stats, page, data, len / d->ps); /* waiters woken: latency */
	woken(d, len / d->ps);
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

static void dirtied(struct udsm *d, uint64_t page, uint64_t n);
static int protect_runs(struct udsm *d, uint64_t from, uint64_t to,
			bool (*want)(const struct udsm *, uint64_t));
static bool unpublished(const struct udsm *d, uint64_t page);

/*
 * Staging (eng_ops.stage): the pages of a set the engine is about to give up are
 * write-protected, then read, a run of pages at a time: one UFFDIO_WRITEPROTECT (and one TLB
 * flush, which costs tens of microseconds on some virtual machines) and one /proc/self/mem
 * read per run instead of one of each per page. Each page the engine then protects is only
 * marked; page_data() returns the copy read after the protect, so no store is lost. Any other
 * action on a staged page takes it out of the stage. stage_end() makes the staged pages the
 * engine did not protect writable again.
 */
/* Bit @page (or index) of bitmap @bm; a NULL bitmap is all zeros and stays so. */
static inline bool bm_test(const uint8_t *bm, uint64_t page)
{
	return bm && (bm[page / 8] >> (page % 8)) & 1;
}

static inline void bm_put(uint8_t *bm, uint64_t page, bool on)
{
	if (!bm)
		return;
	if (on)
		bm[page / 8] |= (uint8_t)(1u << (page % 8));
	else
		bm[page / 8] &= (uint8_t)~(1u << (page % 8));
}

/* Whether @page is staged; its index in the stage in *@i. */
static inline bool staged(const struct udsm *d, uint64_t page, unsigned *i)
{
	if (!d->staging || page - d->stage_base >= WIRE_SET_PAGES)
		return false;
	*i = (unsigned)(page - d->stage_base);
	return bm_test(d->stage_on, *i);
}

static void unstage(struct udsm *d, uint64_t page)
{
	unsigned i;

	if (staged(d, page, &i))
		bm_put(d->stage_on, i, false);
}

static void op_stage(void *ctx, uint64_t base, const uint8_t *bm)
{
	struct udsm *d = ctx;

	installs_flush(d);
	if (!d->stage_buf)
		d->stage_buf = aligned_alloc(d->ps, (size_t)WIRE_SET_PAGES * d->ps);
	if (!d->stage_buf)
		return; /* no memory: each page goes its own way */
	d->staging = true;
	d->stage_base = base;
	memset(d->stage_on, 0, sizeof(d->stage_on));
	memset(d->stage_claim, 0, sizeof(d->stage_claim));
	memset(d->stage_ok, 0, sizeof(d->stage_ok));
	for (unsigned i = 0, j; i < WIRE_SET_PAGES; i = j) {
		if (!bm_test(bm, i)) {
			j = i + 1;
			continue;
		}
		for (j = i; j < WIRE_SET_PAGES && bm_test(bm, j); j++)
			;
		size_t len = (size_t)(j - i) * d->ps;

		/* Published pages are protected already: a write-protect walks and rewrites every
		 * PTE of its range even so (a trap per PTE on the PVM guest), so only the runs of
		 * pages not published are protected here (and so become published: Modified and
		 * protected). */
		if (protect_runs(d, base + i, base + j, unpublished))
			continue; /* not staged: the engine's protect() meets the error itself */
		bool ok = d->memfd >= 0 && page_read(d, base + i, d->stage_buf + i * d->ps, len);

		for (unsigned k = i; k < j; k++) {
			bm_put(d->stage_on, k, true);
			bm_put(d->stage_ok, k, ok); /* else page_data() reads (and reports) per page */
		}
	}
}

static void op_stage_end(void *ctx)
{
	struct udsm *d = ctx;

	if (!d->staging)
		return;
	d->staging = false;
	for (unsigned i = 0, j; i < WIRE_SET_PAGES; i = j) {
		if (!bm_test(d->stage_on, i) || bm_test(d->stage_claim, i)) {
			j = i + 1;
			continue;
		}
		for (j = i; j < WIRE_SET_PAGES && bm_test(d->stage_on, j) &&
			    !bm_test(d->stage_claim, j); j++)
			;
		int err = uffd_wp(&d->uffd, page_addr(d, d->stage_base + i),
				  (size_t)(j - i) * d->ps, false);

		dirtied(d, d->stage_base + i, j - i);
		if (err && !d->fenced)
			fence_later(d, "cannot make page %llu writable again: %s",
				    (unsigned long long)(d->stage_base + i), strerror(-err));
	}
}

/*
 * Publishing: at each barrier this node enters, the pages it holds Modified and made writable
 * since the last one are write-protected, a run at a time, and marked clean. They stay
 * Modified (the engine is not told): a store to one faults, and the service thread makes it,
 * with the clean pages after it, writable again at once, with no message (unclean()). What
 * it buys: the next node to read such a page finds the owner's write-protect already done,
 * off its critical path, and revoking write access from a written page is the dearest
 * page-table change on some virtual machines (docs/PERFORMANCE.md: ~50 us on the PVM guest
 * while the other vCPU runs, 5 for a page already protected). The usual pattern (write,
 * barrier, read each other's data) pays each protect once, during the barrier. A page this
 * node writes again after the barrier before anyone read it (a stencil's interior rows, each
 * iteration) cost a protect, a local fault and, on that guest, a first store that traps again,
 * for nothing: it is marked and not published again until another node takes it (measured:
 * Jacobi on 2 nodes 2.1 s publishing every page, 0.79 s never publishing).
 */
#define PUBLISH_RUN 256 /* pages made writable again by one store to a clean page */

static inline bool clean_get(const struct udsm *d, uint64_t page)
{
	return bm_test(d->clean, page);
}

/* Another node takes @page (a downgrade or a drop here): worth publishing again. */
static inline void taken(struct udsm *d, uint64_t page)
{
	bm_put(d->rewrote, page, false);
}

static inline void clean_put(struct udsm *d, uint64_t page, bool on)
{
	bm_put(d->clean, page, on);
}

static void dirtied(struct udsm *d, uint64_t page, uint64_t n)
{
	for (uint64_t i = 0; d->clean && i < n; i++)
		clean_put(d, page + i, false);
	if (page < d->dirty_lo)
		d->dirty_lo = page;
	if (page + n > d->dirty_hi)
		d->dirty_hi = page + n;
}

/* Modified here, writable, and not written again since its last publishing. */
static bool publishable(const struct udsm *d, uint64_t page)
{
	return eng_state(d->eng, page) == ENG_M && !clean_get(d, page) &&
	       !bm_test(d->rewrote, page);
}

static bool unpublished(const struct udsm *d, uint64_t page)
{
	return !clean_get(d, page);
}

/*
 * Write-protect the runs of pages in [@from, @to) that @want, one system call per run, and
 * mark them clean (published). A run that fails stays writable and unmarked, which is correct
 * (only not published); the others go on. Returns the first failure, or 0.
 */
static int protect_runs(struct udsm *d, uint64_t from, uint64_t to,
			bool (*want)(const struct udsm *, uint64_t))
{
	int first = 0;

	for (uint64_t p = from, q; p < to; p = q) {
		if (!want(d, p)) {
			q = p + 1;
			continue;
		}
		for (q = p; q < to && want(d, q); q++)
			;
		int err = uffd_wp(&d->uffd, page_addr(d, p), (size_t)(q - p) * d->ps, true);

		if (err) {
			first = first ? first : err;
			continue;
		}
		for (uint64_t k = p; k < q; k++)
			clean_put(d, k, true);
	}
	return first;
}

/* Write-protect the Modified pages made writable since the last barrier. */
static void publish(struct udsm *d)
{
	if (d->dirty_lo >= d->dirty_hi || d->fenced)
		return;
	if (!d->clean) {
		d->clean = calloc((size_t)(d->npages + 7) / 8, 1);
		d->rewrote = calloc((size_t)(d->npages + 7) / 8, 1);
	}
	if (!d->clean || !d->rewrote)
		return; /* no memory: nothing published, nothing lost */
	installs_flush(d);
	protect_runs(d, d->dirty_lo, d->dirty_hi, publishable); /* a failed run: not published */
	d->dirty_lo = UINT64_MAX;
	d->dirty_hi = 0;
}

/* A store to the clean @page: make it, and the clean pages after it, writable again. */
static bool unclean(struct udsm *d, uint64_t page)
{
	uint64_t q = page;

	while (q < d->npages && q - page < PUBLISH_RUN && clean_get(d, q) &&
	       eng_state(d->eng, q) == ENG_M)
		q++;
	if (q == page)
		return false;
	installs_flush(d);
	/* Counted before the unprotect wakes the thread: it may read its statistics at once. */
	NODE_STAT_ADD(d, faults, 1); /* ours, published at a barrier: no request */
	NODE_STAT_ADD(d, write_faults, 1);
	int err = uffd_wp(&d->uffd, page_addr(d, page), (size_t)(q - page) * d->ps, false);

	if (err && !d->fenced)
		fence_later(d, "cannot make page %llu writable again: %s",
			    (unsigned long long)page, strerror(-err));
	dirtied(d, page, q - page); /* a waiter is woken by the unprotect */
	for (uint64_t k = page; k < q; k++)
		bm_put(d->rewrote, k, true);
	return true;
}

static int op_install(void *ctx, uint64_t page, const void *data, bool writable)
{
	struct udsm *d = ctx;
	bool wp = !writable;

	unstage(d, page);
	if (writable)
		dirtied(d, page, 1);
	else
		clean_put(d, page, false);

	if (!d->run_buf) {
		int err = install_one(d, page, data, d->ps, wp);

		mark_fresh(d, page, writable, data); /* the digest after the wake-up */
		return err;
	}
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
	mark_fresh(d, page, writable, data);
	return 0;
}

static int op_protect(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;
	unsigned i;

	installs_flush(d);
	taken(d, page);
	if (staged(d, page, &i) && !bm_test(d->stage_claim, i)) {
		bm_put(d->stage_claim, i, true); /* write-protected by op_stage() */
		clean_put(d, page, false);
		return 0;
	}
	if (clean_get(d, page)) {
		clean_put(d, page, false); /* write-protected when published */
		return 0;
	}

	return fenced_ok(d, uffd_wp(&d->uffd, page_addr(d, page), d->ps, true));
}

static int op_unprotect(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;

	installs_flush(d);
	unstage(d, page);
	dirtied(d, page, 1);

	mark_fresh(d, page, false, NULL); /* its bytes are not at hand: held the whole time */
	int err = fenced_ok(d, uffd_wp(&d->uffd, page_addr(d, page), d->ps, false));

	stats_woken(d->stats, page); /* an upgrade's waiters woken: latency */
	woken(d, 1);
	return err;
}

static int op_drop(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;

	installs_flush(d);
	unstage(d, page);
	clean_put(d, page, false);
	taken(d, page);

	return fenced_ok(d, uffd_drop(page_addr(d, page), d->ps));
}

/* The scratch slots (node.h): mapped as the region is, since the kernel moves a page only
 * between mappings alike (uffd_map()). */
static void scratch_init(struct udsm *d)
{
	void *p;

	if (!d->uffd.move)
		return; /* the engine protects, reads and drops instead */
	if (uffd_map(NULL, scratch_len(d), false, &p))
		return;
	if (uffd_register_scratch(&d->uffd, p, scratch_len(d))) {
		munmap(p, scratch_len(d));
		return;
	}
	d->scratch = p;
}

/* Empty the used slots (one page-table change for all of them); -errno if it failed, and then
 * the scratch is not used any more. */
static int scratch_zap(struct udsm *d)
{
	int err;

	if (!d->scratch_used)
		return 0;
	err = uffd_drop(d->scratch, (size_t)d->scratch_used * d->ps);
	d->scratch_used = 0;
	if (err) {
		log_warn("cannot empty the scratch pages (%s): pages given up are write-protected, "
			 "read and dropped from now on", strerror(-err));
		d->scratch_off = true;
	}
	return err;
}

/*
 * eng_ops.take: the page leaves the region with its contents in one UFFDIO_MOVE, where the
 * other way takes three system calls, two of them page-table changes with a TLB flush each
 * (write-protect, read through /proc/self/mem, MADV_DONTNEED). Measured on the PVM guest (AMD
 * EPYC family 26): 5.5-7.7 us against 12.7 with the other vCPU idle, 24 against 49 with it
 * busy (docs/PERFORMANCE.md 3.16). A store racing with the move lands before it (and moves
 * with the page) or faults as missing after it, like any access to a page this node gave up.
 */
static const void *op_take(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;
	uint8_t *slot;
	unsigned i;
	int err;

	installs_flush(d);
	/* A staged page was protected and read with its set already: nothing to gain. */
	if (!d->scratch || d->scratch_off || d->fenced || staged(d, page, &i))
		return NULL;
	if (d->scratch_used == NODE_SCRATCH_PAGES && scratch_zap(d))
		return NULL;
	slot = d->scratch + (size_t)d->scratch_used * d->ps;
	err = uffd_move(&d->uffd, slot, page_addr(d, page), d->ps);
	if (err) {
		/*
		 * -EBUSY: the page is shared (KSM merged it) or pinned; -ENOENT: the application
		 * dropped it, which page_data() finds out; -EAGAIN: it is being migrated. The
		 * other way handles each. Anything else would fail every time: stop trying.
		 */
		if (err != -EBUSY && err != -ENOENT && err != -EAGAIN) {
			log_warn("UFFDIO_MOVE of page %llu failed (%s): pages given up are "
				 "write-protected, read and dropped from now on",
				 (unsigned long long)page, strerror(-err));
			d->scratch_off = true;
		}
		return NULL;
	}
	d->scratch_used++;
	clean_put(d, page, false);
	taken(d, page);
	return slot;
}

/*
 * The engine reads a page it holds to send it (FETCH reply, home serving from its own
 * mapping). A plain load would fault, and wait forever on this very thread, if the
 * application dropped the page behind our back; a read through /proc/self/mem fails instead
 * (the kernel does not wait on userfaultfd for it). Costs one system call per page sent from
 * the mapping, about as much as the copy it replaces (docs/PERFORMANCE.md).
 */
/* Read @len bytes of @page into @buf through /proc/self/mem; false if the page is not there. */
static bool page_read(struct udsm *d, uint64_t page, void *buf, size_t len)
{
	ssize_t r;

	do
		r = pread(d->memfd, buf, len, (off_t)(uintptr_t)page_addr(d, page));
	while (r < 0 && errno == EINTR);
	return r == (ssize_t)len;
}

static const void *op_page_data(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;
	unsigned i;

	installs_flush(d);
	if (staged(d, page, &i) && bm_test(d->stage_claim, i) && bm_test(d->stage_ok, i))
		return d->stage_buf + (size_t)i * d->ps; /* read after its protect */
	if (d->memfd < 0)
		return tsan_page_snapshot(page_addr(d, page), d->ps); /* the page itself without TSan */
	if (!page_read(d, page, d->safe_buf, d->ps)) {
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

	return d->memfd < 0 || page_read(d, page, &b, 1);
}

static int op_wake(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;

	installs_flush(d);
	woken(d, 1);

	return fenced_ok(d, uffd_wake(&d->uffd, page_addr(d, page), d->ps));
}

static int op_poison(void *ctx, uint64_t page)
{
	struct udsm *d = ctx;

	installs_flush(d);
	stats_forget(d->stats, page); /* no latency sample for a lost page */
	woken(d, 1);
	int err = uffd_poison(&d->uffd, page_addr(d, page), d->ps);

	if (err == -ENOTSUP)
		return 0; /* logged once at open: the thread stays blocked until close */
	return fenced_ok(d, err);
}

/*
 * A barrier's answer, taken by the thread that waits for it (docs/PERFORMANCE.md 3.22). An
 * application thread that sent its barrier's arrival itself (barrier_send()) waits for the
 * answer on the collector's socket itself (barrier_borrow()): in epoll_wait() on a second
 * epoll instance, lend_epfd, that holds that socket and lend_evfd. Both instances register
 * the socket with EPOLLEXCLUSIVE, lend_epfd's first. The kernel wakes a socket's exclusive
 * waiters in the order they were added and stops at the first instance with a thread in
 * epoll_wait(): the answer wakes the thread that waits for it while it waits there, and the
 * service thread otherwise, not both, and no epoll_ctl() is made per barrier (only the first
 * loan to a peer registers it). Were the order otherwise, the service thread would take the
 * answer and end the loan: slower, not wrong. During the loan the borrower serves whatever
 * comes on the socket, under turn, as the service thread would. Since what wakes it does not
 * reach the service thread's epoll, it reads what woke it even if the loan ended meanwhile,
 * and a socket that still holds bytes as the loan ends goes back to the service thread's set
 * (loan_return()). The loan ends with the barrier, or earlier when the peer's epoll events
 * change (peer_events()), a message of its is held, the peer is gone (peer_gone(), fence()),
 * the barrier ends on the service thread (op_barrier_done()), or the service thread polls or
 * stops (service_main()); the borrower then waits for bar_seq as any waiter.
 */

/* Signal eventfd @fd (kick(), loan_over()); nonblocking: a full counter is signalled. */
static void evfd_post(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_perror("write to eventfd");
}

/* Reset eventfd @fd's counter (nonblocking: nothing to read is fine). */
static void evfd_clear(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_perror("read from eventfd");
}

/* End the loan, if any; the borrower is woken through lend_evfd unless it is the caller (it
 * then sees the loan over before it lets go of turn). Locking: turn. */
static void loan_over(struct udsm *d)
{
	if (d->lent < 0)
		return;
	d->lent = -1;
	if (d->app_holds_turn)
		return;
	evfd_post(d->lend_evfd);
	d->lend_written = true; /* read back at the next loan_start() */
}

/* Take @n's socket out of lend_epfd, before it is closed. Locking: turn. */
static void lend_forget(struct udsm *d, unsigned n)
{
	if (d->lent == (int)n)
		loan_over(d);
	if (d->lend_peer == (int)n) {
		epoll_ctl(d->lend_epfd, EPOLL_CTL_DEL, d->peers[n].fd, NULL);
		d->lend_peer = -1;
	}
}

/* The barrier this node's threads wait in completed with @err. Locking: mu; the caller has
 * them woken after the unlock (op_barrier_done()). */
static void bar_done(struct udsm *d, int err)
{
	d->bar = BAR_DONE;
	d->bar_result = err;
	__atomic_fetch_add(&d->bar_seq, 1, __ATOMIC_RELEASE);
}

static void op_barrier_done(void *ctx, int err)
{
	struct udsm *d = ctx;

	installs_flush(d);
	if (d->bar_publishing) {
		/*
		 * Arrived last: the barrier completed inside eng_barrier(), before this node
		 * published what it wrote. Its threads go on once it has: a store made while
		 * publish() runs lands before or after the page's write-protect, either way
		 * correct, but an application past its barrier would have its pages protected
		 * under its stores (a fault each for nothing).
		 */
		d->bar_later = true;
		d->bar_later_err = err;
		return;
	}
	wait_barrier(&d->wait, net_now_ns(), true, -1);
	wait_publish(d);

	pthread_mutex_lock(&d->mu);
	bar_done(d, err);
	pthread_mutex_unlock(&d->mu);
	if (d->app_holds_turn)
		return; /* the waiter itself (barrier_send(), barrier_borrow()): it sees bar_seq */
	/* The waiter borrows a socket and is woken with the loan's end, or has left it
	 * (barrier_borrow()) and sleeps on bar_seq: woken as below. */
	loan_over(d);
	/*
	 * Woken by the service loop once it lets go of turn (service_main()): the waiter shares
	 * this thread's CPU (the default placement), and woken at once it came back with its
	 * next barrier before this thread was asleep, so that barrier went through this thread
	 * too, and its answer, a switch more (docs/PERFORMANCE.md 3.22).
	 */
	d->bar_wake = true;
}

static void op_log(void *ctx, int level, const char *msg)
{
	struct udsm *d = ctx;

	ulog(level, "engine: node %u: %s", d->self, msg);
}

/*
 * The leave's flow control: a leaving node hands everything it holds and homes over (engine.h,
 * eng_leave), which can be far more than peer_buffer_max, and a queue over the bound costs the
 * peer. The engine fills the output toward a peer up to the high-water mark, as for anything
 * else, and goes on (leave_pump) once that output fell back to half the mark.
 */
static size_t op_room(void *ctx, unsigned dst)
{
	struct udsm *d = ctx;
	struct peer *p = &d->peers[dst];
	size_t pending = conn_pending(&p->io);

	if (p->fd < 0 || (d->doomed & BIT(dst)))
		return SIZE_MAX; /* op_send drops it: the engine learns of the loss */
	return pending < p->io.hwm ? p->io.hwm - pending : 0;
}

static const struct eng_ops node_ops = {
	.send = op_send,
	.install = op_install,
	.protect = op_protect,
	.stage = op_stage,
	.stage_end = op_stage_end,
	.unprotect = op_unprotect,
	.drop = op_drop,
	.page_data = op_page_data,
	.take = op_take,
	.wake = op_wake,
	.poison = op_poison,
	.barrier_done = op_barrier_done,
	.log = op_log,
	.moved = stats_op_moved,
	.written = stats_op_written,
	.handover = lockd_handover,
	.room = op_room,
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
		.home_chunk = d->home_chunk,
		.set_pages = (uint32_t)(node_burst_pages(d) ? node_burst_pages(d) : 1),
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
	p->events = 0;
	p->excl = false;
	wire_dec_free(&p->dec);
	conn_free(&p->io);
}

/*
 * Flow control, and why it cannot deadlock.
 *
 * Output to a peer goes through its conn's buffer; a full socket is waited for with EPOLLOUT,
 * never retried in a loop. While more than the high-water mark is queued toward peer P, this
 * node stops *serving requests* from P: GET_S, GET_M, FETCH, FWD, INV and BARRIER from P
 * (and anything it does not classify, such as BYE, to keep P's link in order) are parked in
 * arrival order instead of reaching the engine, because serving them adds output toward P.
 * Responses from P (DATA, GRANT, INV_ACK, FETCH_REPLY, NACK, BARRIER_DONE, the forwarding
 * messages but FWD, RA_SKIP; docs/PROTOCOL.md "Forwarding" says why that order is safe) and
 * heartbeats are
 * delivered at once, overtaking parked requests, and the socket keeps being read.
 *
 * Deadlock: two nodes congested toward each other both keep reading, so the bytes each one
 * queued for the other keep draining into the other's parked queue; responses keep
 * completing transactions, and once a backlog falls to half the mark the parked requests are
 * served in order. Reading stops only when a peer has more requests parked than any
 * well-behaved peer can have in flight: a node has at most one request per page outstanding
 * toward a home (GET_S/GET_M, read-ahead included, since a requested page is in a transient
 * state until answered), and a home at most one FETCH or INV per page toward a node (the
 * entry stays busy until that node answers), so npages + a few entries suffice.
 *
 * Order: letting a response overtake a parked request is safe because the protocol never
 * needs the other order on one link. A home sends nothing more about a page to a node after
 * an INV or FETCH until that node answered it, so nothing behind a parked INV/FETCH concerns
 * its page; a parked GET_S/GET_M reaches the home later than the requester's INV_ACK or
 * FETCH_REPLY sent after it, which is what the home sees anyway when it queues the request
 * behind a busy entry.
 *
 * Memory: the output toward P is bounded by peer_buffer_max. Beyond the mark it grows only by
 * answers to requests accepted before (bounded by the protocol as above) and by this node's
 * own requests; a peer that does not read at all eventually makes a queue operation fail,
 * and the peer is then lost (eng_peer_lost), never a message silently dropped.
 */
static bool parkable(unsigned type)
{
	switch (type) {
	case WIRE_DATA:
	case WIRE_GRANT:
	case WIRE_INV_ACK:
	case WIRE_FETCH_REPLY:
	case WIRE_NACK:
	case WIRE_BARRIER_DONE:
	case WIRE_LOCK_GRANT:
	case WIRE_LOCK_BUSY:
	case WIRE_LOCK_NACK:
	case WIRE_FWD_DATA:
	case WIRE_FWD_REPLY:
	case WIRE_FWD_ACK:
	case WIRE_FWD_NONE:
	case WIRE_FWD_ASK:
	case WIRE_RECALL:
	case WIRE_RA_SKIP:
	case WIRE_DATA_SET:
	case WIRE_PING:
	case WIRE_EXPEL:
		return false;
	default:
		return true;
	}
}

static void kick(struct udsm *d);

/* An epoll_ctl() on peer @n's socket failed (ENOMEM): it might never be read again. The peer
 * is lost at a safe point, the service thread's next round (flush_all()). */
static void ep_peer_failed(struct udsm *d, unsigned n)
{
	log_perror("epoll_ctl on node %u's socket", n);
	d->doomed |= BIT(n);
	kick(d);
}

/*
 * Register peer @n's socket in the service thread's epoll set EPOLLEXCLUSIVE for @ev, in
 * place of its entry for p->events (0: none): removed and added again, so that the entry
 * comes after lend_epfd's on the socket's wait queue (lend_add()); no events, left out.
 * EPOLL_CTL_ADD reports the socket at once if it is readable. 0 or -1 (ep_peer_failed()).
 */
static int ep_peer_excl(struct udsm *d, unsigned n, uint32_t ev)
{
	struct peer *p = &d->peers[n];
	struct epoll_event e = { .events = ev | EPOLLEXCLUSIVE, .data.u32 = n };

	if ((p->events && epoll_ctl(d->epfd, EPOLL_CTL_DEL, p->fd, NULL)) ||
	    (ev && epoll_ctl(d->epfd, EPOLL_CTL_ADD, p->fd, &e))) {
		ep_peer_failed(d, n);
		return -1;
	}
	return 0;
}

/* Register the epoll events peer @n needs now: EPOLLIN unless its parked queue is full,
 * EPOLLOUT while output waits for room. One epoll_ctl only when they change. */
static void peer_events(struct udsm *d, unsigned n, bool want_out)
{
	struct peer *p = &d->peers[n];
	uint32_t ev = (conn_park_full(&p->io) ? 0 : EPOLLIN) | (want_out ? EPOLLOUT : 0);

	if (p->fd < 0 || ev == p->events)
		return;
	if (d->lent == (int)n)
		loan_over(d); /* not only reading any more: the service thread's again */
	struct epoll_event e = { .events = ev, .data.u32 = n };

	if (p->excl) {
		/* Registered EPOLLEXCLUSIVE (lend_add()), which EPOLL_CTL_MOD refuses. */
		if (!ep_peer_excl(d, n, ev))
			p->events = ev;
	} else if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, p->fd, &e) == 0) {
		p->events = ev;
	} else {
		ep_peer_failed(d, n);
	}
}

/* @expel: tell a peer that may still run that it is lost; @tell: the engine still has to
 * learn it is gone (not after a BYE, which the engine took itself). */
static void peer_gone(struct udsm *d, unsigned n, int level, const char *why, bool expel,
		      bool tell)
{
	struct peer *p = &d->peers[n];

	if (p->fd < 0)
		return;
	ulog(level, LOG_PREFIX "node %u: %s node %u (%s)", d->self,
	     level == UDSM_LOG_INFO ? "peer left:" : "lost", n, why);
	if (expel) {
		/* We drop a peer that may still be running: tell it, so that it fences itself
		 * instead of serving copies the survivors no longer track. Best effort: one
		 * non-blocking send behind whatever is still queued. */
		struct wire_msg m = { .type = WIRE_EXPEL, .src = (uint16_t)d->self };

		p->io.max += WIRE_HDR_LEN; /* room for the notice even over the bound */
		/* Not from a node about to fence: what it queued may follow a failed page
		 * operation (a zero page for one it lost, op_page_data()). */
		if (!d->fence_pending && !conn_queue(&p->io, &m, NULL))
			(void)conn_flush(&p->io, p->fd);
	}
	lend_forget(d, n);
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, p->fd, NULL);
	if (p->has_held) {
		p->has_held = false;
		d->nheld--;
	}
	node_peer_close(p);
	d->dirty &= ~BIT(n);
	d->doomed &= ~BIT(n);
	d->parking &= ~BIT(n);
	if (tell)
		eng_peer_lost(d->eng, n);
	lockd_peer_gone(d, n, tell);
}

/* The peer broke the connection (or its stream): nothing to tell it. */
static void peer_lost(struct udsm *d, unsigned n, int level, const char *why)
{
	peer_gone(d, n, level, why, false, true);
}

/* We give up on a peer that may still be running: expel it. */
static void peer_expel(struct udsm *d, unsigned n, const char *why)
{
	peer_gone(d, n, UDSM_LOG_ERR, why, true, true);
}

/* Peers whose output could not be queued are lost now that the engine has returned. */
static void lose_doomed(struct udsm *d)
{
	while (d->doomed) {
		unsigned n = (unsigned)__builtin_ctzll(d->doomed);

		d->doomed &= ~BIT(n);
		peer_expel(d, n, "its output exceeded peer_buffer_max or memory ran out");
	}
}

/* Write queued output; wait for EPOLLOUT if the socket is full. */
static void peer_flush(struct udsm *d, unsigned n)
{
	struct peer *p = &d->peers[n];
	uint64_t before = p->io.bytes_out;
	int err;

	if (p->fd < 0)
		return;
	err = conn_flush(&p->io, p->fd);
	NODE_STAT_ADD(d, bytes_sent, p->io.bytes_out - before);
	if (err == 0 || err == -EAGAIN) {
		peer_events(d, n, err == -EAGAIN);
		return;
	}
	char why[96];
	snprintf(why, sizeof(why), "send: %s", strerror(-err));
	peer_lost(d, n, UDSM_LOG_WARN, why);
}

static void peer_drain(struct udsm *d, unsigned n);

/* A leave that waits for room toward a peer goes on once that output fell to half the mark
 * (op_room). */
static void leave_pump(struct udsm *d)
{
	int n = eng_paced(d->eng);

	if (n < 0 || conn_pending(&d->peers[n].io) > d->peers[n].io.hwm / 2)
		return;
	eng_resume(d->eng);
}

/*
 * Until nothing is left to do: stage installs out, lose the doomed, write every peer's
 * output, and serve parked requests of peers whose backlog fell back to half the mark.
 * Losing a peer or serving a request runs the engine again, which may queue more output or
 * stage installs; nothing is left staged or queued-but-unflushed when the loop sleeps. A
 * peer whose socket is full leaves the dirty set (it is flushed again on EPOLLOUT), so this
 * ends: each round either empties a queue or finds it blocked.
 */
static void fence(struct udsm *d, const char *why);

/*
 * The output of several peers in one system call (os/uring.h): every peer has its message
 * before one that shares this CPU can take it. The service thread's only: a thread that once
 * submitted to a ring is interrupted (EINTR) in whatever it blocks in when the ring is closed,
 * and application threads are the application's. A send the kernel did not take, or that
 * sent part of the output, leaves the rest to the peer's own flush right after; a full
 * socket waits for EPOLLOUT, a failed one loses the peer, as in peer_flush().
 */
static __thread bool in_service; /* this thread is a node's service thread */

static void flush_batch(struct udsm *d)
{
	struct uring_send v[UDSM_MAX_NODES];
	unsigned who[UDSM_MAX_NODES], k = 0;

	if (d->ring.fd < 0 || !in_service)
		return;
	for (uint64_t m = d->dirty; m; m &= m - 1) {
		unsigned n = (unsigned)__builtin_ctzll(m);
		struct peer *p = &d->peers[n];

		if (p->fd < 0 || !conn_pending(&p->io))
			continue;
		v[k] = (struct uring_send){ .fd = p->fd, .buf = conn_out(&p->io),
					    .len = conn_pending(&p->io) };
		who[k++] = n;
	}
	if (k < 2)
		return;
	int err = uring_send(&d->ring, v, k);

	if (err && err != -EAGAIN && err != -ENOMEM && err != -EBUSY && err != -EINTR) {
		log_warn("node %u: io_uring send failed (%s): one send() per peer from now on",
			 d->self, strerror(-err));
		uring_close(&d->ring);
	}
	/* What was sent first, for every peer: losing one below may close the others. */
	for (unsigned i = 0; i < k; i++) {
		ssize_t r = v[i].res;

		if (r == -ECANCELED)
			continue; /* not sent: peer_flush() sends it */
		conn_sent(&d->peers[who[i]].io, r > 0 ? (size_t)r : 0, r);
		if (r > 0)
			NODE_STAT_ADD(d, bytes_sent, (uint64_t)r);
	}
	for (unsigned i = 0; i < k; i++) {
		unsigned n = who[i];
		ssize_t r = v[i].res;
		char why[96];

		if (r >= 0 || r == -ECANCELED || d->peers[n].fd < 0)
			continue;
		d->dirty &= ~BIT(n);
		if (r == -EAGAIN) {
			peer_events(d, n, true); /* flushed again on EPOLLOUT */
			continue;
		}
		snprintf(why, sizeof(why), "send: %s", strerror((int)-r));
		peer_lost(d, n, UDSM_LOG_WARN, why);
	}
}

static void flush_all(struct udsm *d)
{
	do {
		if (lockd_pump(d)) /* lock messages the application threads queued */
			fence_later(d, "out of memory in the lock layer: a lock message was lost");
		installs_flush(d);
		if (d->fence_pending)
			break; /* nothing queued after the failure may go out: fenced below */
		lose_doomed(d);
		if (d->dirty & (d->dirty - 1))
			flush_batch(d);
		while (d->dirty) {
			unsigned n = (unsigned)__builtin_ctzll(d->dirty);

			d->dirty &= ~BIT(n);
			peer_flush(d, n);
		}
		leave_pump(d);
		for (uint64_t m = d->parking; m; m &= m - 1) {
			unsigned n = (unsigned)__builtin_ctzll(m);
			struct peer *p = &d->peers[n];

			if (p->fd < 0 || conn_pending(&p->io) > p->io.hwm / 2 || p->has_held)
				continue;
			peer_drain(d, n);
		}
	} while (d->run_n || d->dirty || d->doomed);
	if (d->fence_pending) /* a page or lock operation of the flush failed: at once */
		fence(d, d->fence_why);
}

/* Hand every complete message in @n's decoder to the engine. */
static int deliver(struct udsm *d, unsigned n, const struct wire_msg *m);

/* A FETCH, FWD or INV for a page handed to a thread moments ago waits, and so does a request
 * to this node as its home that would take it from this node's mapping (see mark_fresh);
 * a read-ahead FETCH_SET waits for its freshest page's plain hold. */
static bool hold(struct udsm *d, struct peer *p, const struct wire_msg *m)
{
	uint64_t until = 0;

	if ((m->type == WIRE_FETCH || m->type == WIRE_FWD || m->type == WIRE_INV) &&
	    m->page < d->npages) {
		until = fresh_end(d, m->page);
	} else if ((m->type == WIRE_GET_M || (m->type == WIRE_GET_S && m->arg == 0)) &&
		   m->page < d->npages) {
		/*
		 * A request to this node as the page's home, which would take the page from this
		 * node's own mapping at once: a GET_M from any copy here, a GET_S (not a read-ahead)
		 * from a Modified one (downgraded, or taken whole if migratory). In a two-node
		 * ping-pong one of the two is the home: without this only the other one held, and
		 * with the home's thread slow to run (its CPU shared with another process) the page
		 * went back and forth dozens of times per transfer (docs/PERFORMANCE.md 3.18).
		 */
		int st = eng_state(d->eng, m->page);

		if (st == ENG_M || (st == ENG_S && m->type == WIRE_GET_M))
			until = fresh_end(d, m->page);
	} else if (m->type == WIRE_FETCH_SET && m->len == WIRE_SET_BYTES) {
		/* The set waits for its freshest page (the engine checks the set itself). */
		for (unsigned i = 0; i < WIRE_SET_PAGES; i++) {
			uint64_t u;

			if (bm_test(m->payload, i) && m->page + i < d->npages &&
			    (u = fresh_until(&d->fresh, m->page + i, false)) > until)
				until = u;
		}
	}
	if (!until || net_now_ns() >= until ||
	    (m->type != WIRE_FETCH_SET && fresh_done(d, m->page)))
		return false;
	p->held = *m; /* its payload, if any, copied: nothing points into the decoder */
	p->held.payload = NULL;
	p->held.hint = 0; /* delivered late: its sender's poll says nothing then */
	if (m->type == WIRE_FETCH_SET) {
		memcpy(p->held_set, m->payload, WIRE_SET_BYTES);
		p->held.payload = p->held_set;
	}
	p->held_until = until;
	p->has_held = true;
	d->nheld++;
	return true;
}

static void peer_drain(struct udsm *d, unsigned n)
{
	struct peer *p = &d->peers[n];
	const struct wire_msg *pm;
	struct wire_msg m;
	int err = -EAGAIN;
	/* Behind a held message or parked ones, what the decoder holds is delivered late: its
	 * sender's poll says nothing then (wait.h), so its hint is dropped. */
	bool late = p->has_held || p->io.park_n;

	if (p->has_held) {
		uint64_t until = p->held_until, end;

		/* A page no longer Modified here is not held beyond its plain hold. */
		if (p->held.type != WIRE_FETCH_SET && (end = fresh_end(d, p->held.page)) < until)
			until = end;
		if (net_now_ns() < until &&
		    (p->held.type == WIRE_FETCH_SET || !fresh_done(d, p->held.page)))
			return;
		p->has_held = false;
		d->nheld--;
		if (deliver(d, n, &p->held))
			return;
	}
	/* Parked requests first, in their order, while the backlog toward @n is low. */
	while (p->fd >= 0 && !p->has_held && !conn_congested(&p->io) &&
	       (pm = conn_parked_head(&p->io))) {
		m = *pm;
		m.hint = 0; /* delivered late: its sender's poll says nothing then */
		if (hold(d, p, &m)) {
			conn_unpark(&p->io);
			break;
		}
		if (deliver(d, n, &m)) /* m.payload lives in the parked slot until the pop */
			return;
		conn_unpark(&p->io);
	}
	while (p->fd >= 0 && !p->has_held && (err = wire_dec_next(&p->dec, &m)) == 0) {
		NODE_STAT_ADD(d, msgs_recv, 1);
		if (late)
			m.hint = 0;
		if (parkable(m.type) && (p->io.park_n || conn_congested(&p->io))) {
			if (conn_park(&p->io, &m)) {
				peer_expel(d, n, "out of memory parking its requests");
				return;
			}
			if (conn_park_full(&p->io))
				break; /* the rest stays in the decoder; reading pauses */
			continue;
		}
		if (hold(d, p, &m))
			break;
		if (deliver(d, n, &m))
			return;
	}
	if (p->fd < 0)
		return;
	if (err != -EAGAIN && err != 0) {
		char why[160];

		snprintf(why, sizeof(why), "malformed stream, connection closed: %s", p->dec.why);
		peer_lost(d, n, UDSM_LOG_ERR, why);
		return;
	}
	if (p->io.park_n || conn_park_full(&p->io))
		d->parking |= BIT(n);
	else
		d->parking &= ~BIT(n);
	peer_events(d, n, p->events & EPOLLOUT);
}

/* One message to the engine; nonzero if the peer is gone afterwards. */
static int deliver(struct udsm *d, unsigned n, const struct wire_msg *m)
{
	char why[256];

	if (d->fence_pending)
		return 1; /* a failed page operation fences this node: nothing more is delivered */
	if (m->hint && m->type != WIRE_BARRIER && m->type != WIRE_BARRIER_DONE)
		wait_hint(&d->wait, net_now_ns());
	switch (m->type) {
	case WIRE_PING:
		return 0; /* its bytes already count as a sign of life */
	case WIRE_EXPEL:
		snprintf(why, sizeof(why), "node %u declared this node lost", n);
		fence(d, why);
		return 1;
	case WIRE_BARRIER:
	case WIRE_BARRIER_DONE:
		break;
	default:
		wait_served(&d->wait); /* a barrier's poll may now be in somebody's way */
	}
	if (ulog_enabled(UDSM_LOG_DEBUG))
		log_debug("node %u <- %u: %s page %llu arg %llu flags %#x", d->self, n,
			  wire_type_name(m->type), (unsigned long long)m->page,
			  (unsigned long long)m->arg, m->flags);
	if (lockd_type(m->type)) {
		if (!lockd_recv(d, n, m))
			return d->peers[n].fd < 0;
		snprintf(why, sizeof(why), "protocol error, connection closed: %s", lockd_why(d));
		peer_expel(d, n, why);
		return 1;
	}
	if (!eng_recv(d->eng, n, m)) {
		if (m->type != WIRE_BYE)
			return d->peers[n].fd < 0;
		/* The engine took the BYE (and the hand-over it ends): only the link is left. */
		peer_gone(d, n, UDSM_LOG_INFO, "it closed its node", false, false);
		return 1;
	}
	snprintf(why, sizeof(why), "protocol error, connection closed: %s", eng_why(d->eng));
	peer_expel(d, n, why);
	return 1;
}

/* Deliver the held messages whose time has come (and what follows them on their link). */
static void release_held(struct udsm *d)
{
	for (unsigned k = 0; d->nheld && k < d->nodes; k++)
		if (d->peers[k].has_held)
			peer_drain(d, k);
}

/* Read and deliver what peer @n sent. Whether its socket is known to be empty now (a recv
 * found no more): not when reading is paused or held, stopped early, or the peer is gone. */
static bool peer_readable(struct udsm *d, unsigned n, uint32_t events)
{
	struct peer *p = &d->peers[n];

	if (!(p->events & EPOLLIN)) {
		/* Reading is paused (its parked queue is full) and the socket reports an error
		 * or hang-up: nothing more will come that we could take. */
		if (events & (EPOLLERR | EPOLLHUP))
			peer_lost(d, n, UDSM_LOG_WARN, "connection closed while reading was paused");
		return false;
	}
	/* While a message of this peer is held, leave its bytes in the socket: TCP flow
	 * control then bounds what piles up, however long the hold. */
	for (int i = 0; i < 4 && p->fd >= 0 && !p->has_held && !conn_park_full(&p->io); i++) {
		size_t room = 0;
		/* Straight into the decoder: a page payload is copied once less. */
		ssize_t r = conn_recv(&p->io, p->fd, &p->dec, &room);

		if (r == -EAGAIN)
			return true;
		if (r == -ECONNRESET && (p->io.park_n || wire_dec_pending(&p->dec))) {
			/* The peer closed: output toward it no longer matters, so what it sent
			 * before closing (a BYE behind parked requests, say) is served first. */
			p->io.hwm = SIZE_MAX;
			peer_drain(d, n);
			if (p->fd < 0)
				return false;
		}
		if (r < 0) {
			char why[96];

			if (r == -ECONNRESET)
				snprintf(why, sizeof(why), "connection closed");
			else if (r == -ENOBUFS || r == -ENOMEM)
				snprintf(why, sizeof(why), "decoder: %s", udsm_strerror((int)r));
			else
				snprintf(why, sizeof(why), "recv: %s", strerror((int)-r));
			peer_lost(d, n, r == -ECONNRESET ? UDSM_LOG_WARN : UDSM_LOG_ERR, why);
			return false;
		}
		d->rx_seen |= BIT(n);
		NODE_STAT_ADD(d, bytes_recv, (uint64_t)r);
		peer_drain(d, n);
		if ((size_t)r < room)
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------------------------------
 * Liveness and fencing.
 *
 * Every tick (peer_timeout / 8) the loop checks each peer: one that sent nothing for
 * peer_timeout is lost (and told so with EXPEL, in case it is merely stopped), one that took
 * none of our queued output for peer_timeout too; to a peer we sent nothing since the last
 * tick goes a PING, so a healthy node is never silent for more than two ticks. Timers cost
 * no system call on the message path: the loop marks bits, the tick turns them into times.
 *
 * A node that finds it may have been declared dead fences itself: it receives EXPEL, or its
 * own loop did not run for peer_timeout - 2 ticks (its peers count up to two more ticks of
 * silence before that gap). Fencing closes every connection and makes every page LOST
 * (eng_fence): no thread here can go on reading a copy the survivors no longer invalidate.
 */

static void fence(struct udsm *d, const char *why)
{
	if (d->fenced)
		return;
	ulog(UDSM_LOG_ERR, LOG_PREFIX "node %u: fenced: %s; every page of the region is lost "
	     "here", d->self, why);
	installs_flush(d);
	for (unsigned n = 0; n < d->nodes; n++) {
		struct peer *p = &d->peers[n];

		if (p->fd < 0)
			continue;
		lend_forget(d, n);
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, p->fd, NULL);
		p->has_held = false;
		node_peer_close(p);
	}
	d->nheld = 0;
	d->dirty = d->doomed = d->parking = 0;
	d->fenced = true;
	d->fence_pending = false;
	eng_fence(d->eng);
	lockd_fence(d);
	installs_flush(d);
	/* One range operation for the whole region, not one per page: also wakes every thread
	 * waiting on a page. */
	if (uffd_poison(&d->uffd, d->base, d->size) == -ENOTSUP)
		log_warn("node %u: without UFFDIO_POISON, threads that access the region block "
			 "until udsm_close()", d->self);
}

static void tick(struct udsm *d, uint64_t now)
{
	uint64_t boot = net_boot_ns(), gap = boot - d->last_tick_boot;

	d->last_tick_boot = boot;
	d->last_tick = now;
	d->next_tick = now + d->tick_ns;
	if (d->fenced)
		return;
	if (gap > d->peer_timeout_ns - 2 * d->tick_ns) {
		char why[128];

		snprintf(why, sizeof(why), "its service loop did not run for %llu ms (bound %llu ms)",
			 (unsigned long long)(gap / 1000000u),
			 (unsigned long long)(d->peer_timeout_ns / 1000000u));
		fence(d, why);
		return;
	}
	for (unsigned n = 0; n < d->nodes && n < UDSM_MAX_NODES; n++) {
		struct peer *p = &d->peers[n];
		char why[128];

		if (p->fd < 0)
			continue;
		if (d->rx_seen & BIT(n))
			p->last_rx = now;
		if (d->tx_seen & BIT(n))
			p->last_tx = now;
		if (!conn_pending(&p->io) || p->io.bytes_out != p->out_mark) {
			p->tx_moved = now;
			p->out_mark = p->io.bytes_out;
		}
		if (now - p->last_rx > d->peer_timeout_ns) {
			snprintf(why, sizeof(why), "silent for %llu ms",
				 (unsigned long long)((now - p->last_rx) / 1000000u));
			peer_expel(d, n, why);
		} else if (now - p->tx_moved > d->peer_timeout_ns) {
			snprintf(why, sizeof(why), "took none of %zu queued bytes for %llu ms",
				 conn_pending(&p->io),
				 (unsigned long long)((now - p->tx_moved) / 1000000u));
			peer_expel(d, n, why);
		} else if (now - p->last_tx >= d->tick_ns) {
			struct wire_msg m = { .type = WIRE_PING, .src = (uint16_t)d->self,
					      .arg = now };

			op_send(d, n, &m, NULL);
		}
	}
	d->rx_seen = d->tx_seen = 0;
}

/* Milliseconds until the next tick, for epoll_wait (at least 1). */
static int tick_wait_ms(const struct udsm *d, uint64_t now)
{
	uint64_t left = d->next_tick > now ? d->next_tick - now : 0;

	return (int)(left / 1000000u) + 1;
}

/* The loop's sleep bound: the next tick, and while a hand-over runs, its deadline checks. */
static int leave_wait_ms(const struct udsm *d, bool leaving)
{
	int t = tick_wait_ms(d, net_now_ns());

	return leaving && t > 100 ? 100 : t;
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
			int s;

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
			if (d->scratch && addr - (uintptr_t)d->scratch < scratch_len(d)) {
				/* Something touched an empty scratch slot (mlockall(MCL_CURRENT),
				 * MADV_POPULATE_*): answer with a zero page, which wakes it, and
				 * give pages up the other way from now on. If a page was moved
				 * into the slot since the fault (-EEXIST), it only needs the wake. */
				void *slot = (void *)(addr & ~((uintptr_t)d->ps - 1));
				size_t done;

				if (uffd_copy(&d->uffd, slot, NULL, d->ps, false, &done))
					uffd_wake(&d->uffd, slot, d->ps);
				if (!d->scratch_off)
					log_info("node %u: something outside udsm touched its scratch "
						 "pages (mlockall?): pages given up are write-protected, "
						 "read and dropped from now on", d->self);
				d->scratch_off = true;
				continue;
			}
			if (addr < (uintptr_t)d->base || addr >= (uintptr_t)d->base + d->size) {
				log_warn("fault at %#llx outside the region", (unsigned long long)addr);
				continue;
			}
			page = (addr - (uintptr_t)d->base) / d->ps;
			write = m->arg.pagefault.flags &
				(UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP);
			s = eng_state(d->eng, page);
			if ((m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) && s == ENG_M &&
			    clean_get(d, page) && unclean(d, page))
				continue; /* ours, published at a barrier: no request */
			/*
			 * A missing-page fault on a page we hold is stale (it was queued before the
			 * install) unless the application dropped the page itself: then its
			 * contents are gone, and treating the fault as stale would wake the thread
			 * into the same fault forever. The engine counts a staged install as
			 * done: put it in first, or the page reads as absent (a race, not the
			 * application).
			 */
			if (!(m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) && !d->fenced &&
			    (s == ENG_S || s == ENG_M || s == ENG_SM_A)) {
				installs_flush(d);
				if (!page_present(d, page)) {
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
			stats_fault(d->stats, page, s, write); /* latency */
			wait_fault(&d->wait, net_now_ns(),
				   __atomic_load_n(&d->st.msgs_sent, __ATOMIC_RELAXED));
			d->switches = 0; /* a poll for it counts its own switches */
			eng_fault(d->eng, page, write);
		}
		if ((size_t)r < sizeof(msgs))
			return;
	}
}

/* ------------------------------------------------------------------------------------------
 * Commands from application threads, and the loop.
 */

static void rehome_poll(struct udsm *d);

/* Enter the barrier an application thread asked for, if it still waits to be entered. Locking:
 * turn (the service thread, or the application thread in node_barrier()). */
static void barrier_enter(struct udsm *d)
{
	bool start = false;
	int err;

	pthread_mutex_lock(&d->mu);
	if (d->bar == BAR_REQUESTED) {
		d->bar = BAR_WAITING;
		start = true;
	}
	pthread_mutex_unlock(&d->mu);
	if (!start)
		return;
	wait_barrier(&d->wait, net_now_ns(), false, eng_barrier_told(d->eng));
	if (eng_barrier_coord(d->eng)) /* every node's mode in the next one: our release says */
		eng_barrier_mode(d->eng, wait_barrier_next(&d->wait));
	d->switches = 0; /* a poll in it counts its own switches */
	d->bar_publishing = true;
	err = eng_barrier(d->eng);
	if (!err) {
		flush_all(d); /* our arrival out first: publishing overlaps the others' */
		publish(d);
	}
	d->bar_publishing = false;
	if (err || d->bar_later) {
		d->bar_later = false;
		op_barrier_done(d, err ? err : d->bar_later_err);
	}
}

/* The eventfd was written to (kick(), a signal for a report, udsm_close()), or poked was set
 * (barrier_send(), node_kick()); the eventfd is not read: node_start() registers it
 * edge-triggered. */
static void commands(struct udsm *d)
{
	stats_poll(d); /* a report SIGUSR2 asked for */
	rehome_poll(d);
	barrier_enter(d);
}

/* The re-homing step an application thread asked for (node_rehome), as far as it can go. */
static void rehome_poll(struct udsm *d)
{
	int op, err = 0;
	bool done = true;

	pthread_mutex_lock(&d->mu);
	op = d->rh_done ? 0 : d->rh_op;
	pthread_mutex_unlock(&d->mu);
	switch (op) {
	case 0:
		return;
	case NODE_RH_FREEZE:
		if (!d->rh_started) {
			d->rh_started = true;
			err = eng_freeze(d->eng, d->rh_first, d->rh_count);
		}
		done = err || eng_frozen_quiet(d->eng);
		break;
	case NODE_RH_REHOME:
		err = eng_rehome(d->eng, d->rh_policy);
		done = err != -EAGAIN;
		if (!err)
			lockd_rehomed(d, d->rh_first, d->rh_count);
		break;
	case NODE_RH_THAW:
		eng_thaw(d->eng);
		break;
	}
	if (!done)
		return;
	d->rh_started = false;
	pthread_mutex_lock(&d->mu);
	d->rh_result = err;
	d->rh_done = true;
	pthread_mutex_unlock(&d->mu);
	pthread_cond_broadcast(&d->cv); /* after the unlock, as in op_barrier_done() */
}

static bool should_quit(struct udsm *d)
{
	bool q;

	pthread_mutex_lock(&d->mu);
	q = d->quit;
	pthread_mutex_unlock(&d->mu);
	return q;
}

/*
 * Leave: give the last messages (the engine's BYE after a hand-over; otherwise a BYE naming
 * no successor, which the peers take as the loss of this node) up to a second to go out.
 */
static void say_bye(struct udsm *d)
{
	int64_t deadline = net_deadline(1000);

	for (unsigned n = 0; n < d->nodes && !eng_left(d->eng); n++) {
		struct wire_msg m = { .type = WIRE_BYE, .src = (uint16_t)d->self,
				      .arg = WIRE_NODE_ANY };

		if (d->peers[n].fd >= 0)
			op_send(d, n, &m, NULL);
	}
	for (unsigned n = 0; n < d->nodes; n++) {
		struct peer *p = &d->peers[n];

		while (p->fd >= 0 && conn_pending(&p->io) && net_now_ms() < deadline) {
			int err = conn_flush(&p->io, p->fd);
			struct pollfd pf = { .fd = p->fd, .events = POLLOUT };

			if (err != -EAGAIN)
				break;
			poll(&pf, 1, 50);
		}
	}
}

/*
 * udsm_close() in progress: is the hand-over done, or stuck? A paced hand-over may take as
 * long as its data takes to go out: the bound is on the time without progress (eng_leave_moved),
 * which pushes @deadline on.
 */
static bool leave_over(struct udsm *d, int64_t *deadline, uint64_t *moved)
{
	uint64_t m = eng_leave_moved(d->eng);

	if (eng_left(d->eng))
		return true;
	if (m != *moved) {
		*moved = m;
		*deadline = net_deadline(LEAVE_TIMEOUT_MS);
	}
	if (net_now_ms() < *deadline)
		return false;
	log_err("node %u: the hand-over made no progress for %d ms: leaving anyway; the pages "
		"this node homed or held Modified are lost", d->self, LEAVE_TIMEOUT_MS);
	return true;
}

static void *service_main(void *arg)
{
	struct udsm *d = arg;
	struct epoll_event evs[64];
	bool polling = false, leaving = false;
	int64_t leave_deadline = 0;
	uint64_t leave_moved = 0;
	char name[16];

	in_service = true;
	snprintf(name, sizeof(name), "udsm/%u", d->self);
	pthread_setname_np(pthread_self(), name);
	pthread_mutex_lock(&d->turn); /* released around every epoll_wait(), and at the end */

	/* Messages that arrived with the last handshake bytes are already in the decoders. */
	for (unsigned n = 0; n < d->nodes; n++)
		if (d->peers[n].fd >= 0)
			peer_drain(d, n);
	flush_all(d);

	for (;;) {
		/* Poll or sleep (wait.h); a held message is released on time only by polling. */
		uint64_t t = net_now_ns();

		bool was_polling = polling;

		polling = d->nheld || wait_poll(&d->wait, t);
		if (!polling)
			wait_sleeping(&d->wait, t);
		else if (!was_polling)
			d->switches = 0; /* a new poll: its switches only (cpu_switched_out()) */
		if (polling)
			loan_over(d); /* a poll reads every socket itself */
		int timeout = polling ? 0 : leave_wait_ms(d, leaving);
		int n, werr;
		uint64_t now;

		/*
		 * Asleep, the node is the application threads' to run (barrier_send()). A
		 * Dekker pair with barrier_send(): either it sees asleep, or this thread sees
		 * poked and does not sleep (both sequentially consistent).
		 */
		if (timeout) {
			__atomic_store_n(&d->asleep, true, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&d->poked, __ATOMIC_SEQ_CST)) {
				__atomic_store_n(&d->asleep, false, __ATOMIC_RELAXED);
				timeout = 0;
			}
		}
		bool wake_waiter = d->bar_wake;

		d->bar_wake = false;
		pthread_mutex_unlock(&d->turn);
		/* After the unlock, asleep set: a waiter that enters its next barrier at once
		 * finds the node its own to run. @d outlives this (udsm_close() joins us). */
		if (wake_waiter)
			futex_wake_all(&d->bar_seq);
		n = epoll_wait(d->epfd, evs, 64, timeout);
		werr = errno;
		pthread_mutex_lock(&d->turn);
		if (timeout)
			__atomic_store_n(&d->asleep, false, __ATOMIC_RELAXED);
		bool poked = __atomic_exchange_n(&d->poked, false, __ATOMIC_SEQ_CST);

		if (poked) {
			n = n < 0 ? 0 : n;
			commands(d); /* then as after any event: flushed, a poll maybe */
		}
		if (n < 0) {
			if (werr == EINTR)
				continue;
			errno = werr;
			log_perror("epoll_wait");
			break;
		}
		/* Timers first: after a stop, find out whether we were expelled before acting
		 * on anything that arrived meanwhile. A clock read, not a system call. */
		now = net_now_ns();
		if (now >= d->next_tick) {
			d->ticking = true; /* what the timers send is not hinted (op_send) */
			tick(d, now);
			d->ticking = false;
			flush_all(d);
		}
		if (n == 0 && !poked) {
			/*
			 * Between empty polls, give the CPU to whoever wants it: on a small or
			 * shared host, an application thread (or another node) that shares our
			 * CPU would otherwise wait out the whole spin (docs/PERFORMANCE.md).
			 */
			if (polling) {
				uint64_t y0, y;

				/* The switches counted are this poll's: the count starts before
				 * its first yield (one getrusage() per poll that yields). */
				if (!d->switches)
					cpu_switched_out(&d->switches);
				y0 = net_now_ns(); /* after the tick's work, if any */
				sched_yield();
				now = net_now_ns();
				y = now - y0;
				wait_yielded(&d->wait, now, y, y >= WAIT_YIELD_BUSY &&
						 cpu_switched_out(&d->switches));
			} else if (timeout) {
				wait_idle(&d->wait); /* a whole sleep with nothing to do */
			}
			if (d->nheld) {
				release_held(d);
				flush_all(d);
				wait_event(&d->wait, net_now_ns()); /* what it delivered is activity */
			}
			if (leaving && (d->fenced || leave_over(d, &leave_deadline, &leave_moved)))
				break;
			continue;
		}
		if (timeout) /* not a poll, nor a sleep given up for a tick due or poked */
			NODE_STAT_ADD(d, wakeups, 1);
		for (int i = 0; i < n; i++) {
			uint32_t k = evs[i].data.u32;

			if (k == EV_UFFD)
				uffd_readable(d);
			else if (k == EV_WAKE)
				commands(d);
			else if (k < d->nodes && d->peers[k].fd >= 0) {
				if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
					peer_readable(d, k, evs[i].events);
				if (d->peers[k].fd >= 0 && (evs[i].events & EPOLLOUT))
					d->dirty |= BIT(k);
			}
		}
		if (d->fence_pending)
			fence(d, d->fence_why);
		release_held(d);
		rehome_poll(d);
		flush_all(d);
		if (!leaving && should_quit(d)) {
			if (d->fenced)
				break; /* nothing to hand over: this node has nothing valid any more */
			/* udsm_close(): hand our pages over (engine.h, eng_leave), bounded. */
			leaving = true;
			leave_deadline = net_deadline(LEAVE_TIMEOUT_MS);
			eng_leave(d->eng);
			flush_all(d);
		}
		if (leaving && (d->fenced || leave_over(d, &leave_deadline, &leave_moved)))
			break; /* fenced: nothing valid is left to hand over */
		wait_event(&d->wait, net_now_ns());
	}
	if (d->lend_peer >= 0) /* its borrower reads nothing more and finds the barrier failed */
		lend_forget(d, (unsigned)d->lend_peer);
	if (d->bar_wake) { /* a barrier that completed in the last round */
		d->bar_wake = false;
		futex_wake_all(&d->bar_seq);
	}
	say_bye(d);
	log_debug("node %u: waiting for answers: %s (median poll %llu us over %u, sleep %llu us "
		  "over %u); for barriers: %s", d->self, wait_mode_name(&d->wait, 0),
		  (unsigned long long)(d->wait.fault.med[WAIT_SPIN] / 1000), d->wait.fault.n[WAIT_SPIN],
		  (unsigned long long)(d->wait.fault.med[WAIT_BLOCK] / 1000),
		  d->wait.fault.n[WAIT_BLOCK], wait_mode_name(&d->wait, 1));
	for (unsigned n = 0; n < d->nodes; n++)
		if (n != d->self)
			log_debug("node %u -> %u: %llu bytes in %llu sends, %llu found the socket "
				  "full; %llu requests from it parked", d->self, n,
				  (unsigned long long)d->peers[n].io.bytes_out,
				  (unsigned long long)d->peers[n].io.sends,
				  (unsigned long long)d->peers[n].io.full,
				  (unsigned long long)d->peers[n].io.parked);
	lockd_stopped(d);
	pthread_mutex_lock(&d->mu);
	d->stopped = true;
	if (d->bar == BAR_WAITING || d->bar == BAR_REQUESTED)
		bar_done(d, UDSM_ECLOSED);
	if (d->rh_op && !d->rh_done) {
		d->rh_done = true;
		d->rh_result = UDSM_ECLOSED;
	}
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	futex_wake_all(&d->bar_seq);
	/* stopped is set: an application thread that takes turn now finds no barrier to enter. */
	pthread_mutex_unlock(&d->turn);
	return NULL;
}

static int ep_add(struct udsm *d, int fd, uint32_t key, uint32_t flags)
{
	struct epoll_event ev = { .events = EPOLLIN | flags, .data.u32 = key };

	return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

int node_start(struct udsm *d)
{
	uint64_t now = net_now_ns();
	int err;

	d->run_buf = aligned_alloc(d->ps, RUN_MAX * d->ps); /* NULL: installs go one by one */
	d->dirty_lo = UINT64_MAX; /* nothing made writable yet (publish()) */
	d->dirty_hi = 0;
	d->safe_buf = aligned_alloc(d->ps, d->ps);
	d->look_buf = aligned_alloc(d->ps, d->ps);
	if (!d->safe_buf || !d->look_buf)
		return -ENOMEM;
	d->memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	if (d->memfd < 0)
		log_warn("cannot open /proc/self/mem (%s): a page the application drops from the "
			 "region behind udsm's back can hang this node", strerror(errno));
	scratch_init(d);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->epfd < 0 || d->evfd < 0)
		return -errno;
	/* Without them no socket is lent (barrier_borrow()): barriers work as before. */
	d->lend_evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d->lend_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->lend_evfd >= 0 && d->lend_epfd >= 0) {
		struct epoll_event e = { .events = EPOLLIN, .data.u32 = EV_WAKE };

		if (epoll_ctl(d->lend_epfd, EPOLL_CTL_ADD, d->lend_evfd, &e)) {
			close(d->lend_epfd);
			d->lend_epfd = -1;
		}
	}
	if ((err = uring_open(&d->ring, UDSM_MAX_NODES)))
		log_debug("node %u: no io_uring (%s): one send() per peer", d->self,
			  strerror(-err));
	/* The eventfd edge-triggered: each write to it is one event, and the loop never reads
	 * it (commands()), one system call less per command (a barrier's). Its counter only
	 * grows, by one a command: 2^64 of them would fill it. */
	if ((err = ep_add(d, d->uffd.fd, EV_UFFD, 0)) ||
	    (err = ep_add(d, d->evfd, EV_WAKE, EPOLLET)))
		return err;
	for (unsigned n = 0; n < d->nodes; n++) {
		struct peer *p = &d->peers[n];

		/* Park bound: more than any well-behaved peer can have in flight (node.c). */
		conn_init(&p->io, d->peer_buffer_max / 16, d->peer_buffer_max,
			  (size_t)d->npages + 2u * UDSM_MAX_NODES);
		p->last_rx = p->last_tx = p->tx_moved = now;
		p->out_mark = 0;
		if (p->fd >= 0 && (err = ep_add(d, p->fd, n, 0)))
			return err;
		p->events = p->fd >= 0 ? EPOLLIN : 0;
	}
	wait_init(&d->wait, d->spin_us);
	wait_publish(d);
	d->last_tick = now;
	d->last_tick_boot = net_boot_ns();
	d->next_tick = now + d->tick_ns;
	err = pthread_create(&d->thread, NULL, service_main, d);
	if (err)
		return -err;
	d->thread_started = true;
	return 0;
}

static void kick(struct udsm *d)
{
	evfd_post(d->evfd);
}

void node_kick(struct udsm *d)
{
	/* As in barrier_send(): awake, the service thread sees poked before it sleeps. */
	__atomic_store_n(&d->poked, true, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&d->asleep, __ATOMIC_SEQ_CST))
		kick(d);
}

void node_send(struct udsm *d, unsigned dst, const struct wire_msg *m)
{
	op_send(d, dst, m, NULL);
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

static bool loan_start(struct udsm *d);

/*
 * Have the barrier just requested entered. While the service thread sleeps, this thread
 * enters it (the arrival sent, the node's pages published) and, when it can, borrows the
 * socket the answer will come on (loan_start()): the service thread then does not wake at
 * all, a raw process's two steps (docs/PERFORMANCE.md 3.20, 3.22). Otherwise, or when the
 * service thread should now poll (for this barrier, or for a held message), it is woken to do
 * it, as before. Whether a socket was lent: the caller then waits on it (barrier_borrow()).
 * Locking: none held; takes turn, then mu.
 */
static bool barrier_send(struct udsm *d)
{
	bool wake, lent = false;
	int cancel;

	/* Awake, the service thread sees poked before it sleeps (service_main()): no eventfd
	 * write, one system call less per barrier while it polls. */
	__atomic_store_n(&d->poked, true, __ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&d->asleep, __ATOMIC_SEQ_CST))
		return false;
	if (pthread_mutex_trylock(&d->turn) != 0) {
		kick(d); /* the service thread woke meanwhile, or another thread runs the node */
		return false;
	}
	/*
	 * Still asleep under turn: the service thread cannot leave epoll_wait() for more than
	 * to wait for turn, so it neither runs nor exits while this thread does. Not asleep: it
	 * woke and went to sleep no more (a poll, which sees poked), or it exited; either way
	 * the node is not this thread's to run.
	 */
	if (!__atomic_load_n(&d->asleep, __ATOMIC_SEQ_CST)) {
		pthread_mutex_unlock(&d->turn);
		return false;
	}
	/* Not cancelled with turn held (send() is a cancellation point). */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	d->app_holds_turn = true;
	/* Cleared first: a barrier_send() from now on finds turn taken and writes the eventfd.
	 * A node_kick() poke cleared with it is served here too: flush_all() sends what it
	 * queued (and it saw asleep, so it wrote the eventfd as well). */
	(void)__atomic_exchange_n(&d->poked, false, __ATOMIC_SEQ_CST);
	barrier_enter(d);
	if (d->fence_pending)
		fence(d, d->fence_why);
	flush_all(d);
	uint64_t now = net_now_ns();

	wait_event(&d->wait, now);
	wake = d->nheld || wait_poll(&d->wait, now);
	if (!wake)
		lent = loan_start(d);
	d->app_holds_turn = false;
	pthread_mutex_unlock(&d->turn);
	pthread_setcancelstate(cancel, NULL);
	if (wake)
		kick(d);
	return lent;
}

/* Register peer @n's socket in lend_epfd, ahead of the service thread's entry. Locking: turn. */
static int lend_add(struct udsm *d, unsigned n)
{
	struct peer *p = &d->peers[n];
	struct epoll_event e = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = n };

	if (d->lend_peer >= 0)
		lend_forget(d, (unsigned)d->lend_peer); /* the collector changed (a leave) */
	if (epoll_ctl(d->lend_epfd, EPOLL_CTL_ADD, p->fd, &e))
		return -errno;
	d->lend_peer = (int)n;
	if (ep_peer_excl(d, n, p->events)) /* the service thread's entry, behind it */
		return -EIO;
	p->excl = true;
	return 0;
}

/*
 * After a loan, peer @n's socket may hold bytes whose arrival woke only the borrower: added
 * again to the service thread's epoll set, which then finds it readable (EPOLL_CTL_ADD checks
 * at once). Locking: turn.
 */
static void loan_return(struct udsm *d, unsigned n)
{
	struct peer *p = &d->peers[n];

	if (p->fd >= 0) /* reading paused (no events): peer_events() adds it when it resumes */
		(void)ep_peer_excl(d, n, p->events);
}

/*
 * Lend the socket of the node that will answer this node's barrier to the thread that waits
 * for it (see loan_over()), if the service thread has nothing to do on it now. Locking: turn.
 */
static bool loan_start(struct udsm *d)
{
	int n = d->lend_epfd >= 0 ? eng_barrier_from(d->eng) : -1;

	if (n < 0)
		return false;
	struct peer *p = &d->peers[n];

	if (p->fd < 0 || p->events != EPOLLIN || p->has_held || (d->parking & BIT(n)))
		return false;
	if (d->lend_peer != n && lend_add(d, (unsigned)n))
		return false;
	if (d->lend_written) {
		/* A loan's end written after its borrower had gone: it would end this one. */
		evfd_clear(d->lend_evfd);
		d->lend_written = false;
	}
	d->lent = n;
	return true;
}

/*
 * Wait for this node's barrier (@seq) on the socket lent to this thread (barrier_send()),
 * serving whatever else comes on it, until the barrier or the loan is over. Locking: none
 * held; takes turn (a wait: the service thread holds it while it runs).
 */
static void barrier_borrow(struct udsm *d, uint32_t seq)
{
	int cancel;
	bool over = false;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel); /* turn is taken below */
	while (!over) {
		struct epoll_event evs[2];
		int r = epoll_wait(d->lend_epfd, evs, 2, -1); /* EINTR: r < 0, round again */
		bool wake = false, empty = true;
		uint32_t ev = 0;

		if (r == 1 && evs[0].data.u32 == EV_WAKE) {
			/*
			 * The loan's end, nothing to read: go without turn, which a polling
			 * service thread lets go of only around its epoll_wait(). The barrier's
			 * end wakes this thread on bar_seq from now on (op_barrier_done()).
			 */
			evfd_clear(d->lend_evfd);
			break;
		}
		pthread_mutex_lock(&d->turn);
		d->app_holds_turn = true;
		for (int i = 0; i < r; i++) {
			if (evs[i].data.u32 != EV_WAKE)
				ev = (int)evs[i].data.u32 == d->lend_peer ? evs[i].events : 0;
			else
				evfd_clear(d->lend_evfd);
		}
		int n = d->lend_peer;

		/*
		 * What woke this thread did not wake the service thread (EPOLLEXCLUSIVE): read
		 * it even if the loan ended meanwhile, and if bytes stay in the socket as the
		 * loan ends, have the service thread's epoll see them (loan_return()).
		 */
		if (n >= 0 && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
			empty = peer_readable(d, (unsigned)n, ev);
			/* Held, its bytes stay in the socket: the service thread's, to release. */
			if (d->lent >= 0 && d->peers[n].has_held)
				loan_over(d);
			if (d->fence_pending)
				fence(d, d->fence_why);
			rehome_poll(d);
			flush_all(d);
			uint64_t now = net_now_ns();

			wait_event(&d->wait, now);
			wake = d->nheld || wait_poll(&d->wait, now);
		}
		over = d->lent < 0 || __atomic_load_n(&d->bar_seq, __ATOMIC_ACQUIRE) != seq;
		if (over) {
			loan_over(d);
			if (!empty)
				loan_return(d, (unsigned)n);
		}
		d->app_holds_turn = false;
		pthread_mutex_unlock(&d->turn);
		if (wake)
			kick(d); /* a held message to release or a poll to make: the service thread's */
	}
	pthread_setcancelstate(cancel, NULL);
}

int node_barrier(struct udsm *d)
{
	uint64_t t0 = net_now_ns(); /* stats: barrier latency */
	uint32_t seq;
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
	seq = d->bar_seq;
	pthread_mutex_unlock(&d->mu);
	if (barrier_send(d))
		barrier_borrow(d, seq);
	while (__atomic_load_n(&d->bar_seq, __ATOMIC_ACQUIRE) == seq)
		futex_wait(&d->bar_seq, seq);
	pthread_mutex_lock(&d->mu);
	err = d->bar_result;
	d->bar = BAR_IDLE;
	pthread_mutex_unlock(&d->mu);
	if (!err)
		stats_barrier(d->stats, net_now_ns() - t0);
	return err;
}

int node_rehome(struct udsm *d, int step, uint64_t first, uint64_t count, int policy)
{
	int err;

	pthread_mutex_lock(&d->mu);
	if (d->quit || d->stopped) {
		pthread_mutex_unlock(&d->mu);
		return UDSM_ECLOSED;
	}
	if (d->rh_op) {
		pthread_mutex_unlock(&d->mu);
		return -EBUSY;
	}
	d->rh_op = step;
	d->rh_first = first;
	d->rh_count = count;
	d->rh_policy = policy;
	d->rh_done = false;
	pthread_mutex_unlock(&d->mu);
	kick(d);
	pthread_mutex_lock(&d->mu);
	while (!d->rh_done)
		pthread_cond_wait(&d->cv, &d->mu);
	err = d->rh_result;
	d->rh_op = 0;
	pthread_mutex_unlock(&d->mu);
	return err;
}

/*
 * In a child of fork() (from the pthread_atfork child handler, api.c): the service thread does
 * not exist here, and the descriptors are copies of the parent's. Close them so that the
 * parent's peers see its connections go away with the parent, whatever the child does.
 * close() and munmap() only: no lock, no allocation.
 */
void node_after_fork_child(struct udsm *d)
{
	for (unsigned n = 0; n < UDSM_MAX_NODES; n++) {
		if (d->peers[n].fd >= 0)
			close(d->peers[n].fd);
		d->peers[n].fd = -1;
	}
	if (d->listen_fd >= 0)
		close(d->listen_fd);
	if (d->epfd >= 0)
		close(d->epfd);
	if (d->evfd >= 0)
		close(d->evfd);
	if (d->lend_evfd >= 0)
		close(d->lend_evfd);
	if (d->lend_epfd >= 0)
		close(d->lend_epfd);
	if (d->uffd.fd >= 0)
		close(d->uffd.fd);
	if (d->memfd >= 0)
		close(d->memfd); /* the parent's memory: not the child's to read */
	uring_close(&d->ring); /* the parent's ring, mapped shared */
	d->listen_fd = d->epfd = d->evfd = d->lend_evfd = d->lend_epfd = d->uffd.fd = d->memfd = -1;
	d->lent = d->lend_peer = -1;
	d->thread_started = false;
	d->stopped = true; /* node_barrier() and node_rehome() return UDSM_ECLOSED, if they can */
	d->asleep = false; /* no application thread runs the node here */
	d->poked = false;
}
