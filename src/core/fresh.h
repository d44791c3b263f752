/* SPDX-License-Identifier: MIT */
/*
 * fresh.h - pages just handed to a waiting thread, and when a request that would take one
 * away again may go ahead (the hold).
 *
 * A thread spinning on a page another node writes asks for it right after every hand-over;
 * without a hold, the writer, woken but not yet running, loses the page before its store and
 * faults again: the page bounces without progress. So a FETCH, FWD or INV (or a request to
 * this node as the page's home) that meets a page handed over less than hold_ns ago waits
 * until then (src/node.c).
 *
 * Waiting the whole hold is what a page handed over to be read needs: nothing shows that the
 * reader has read. A page handed over writable shows its stores: the table keeps a digest of
 * its bytes as handed over and at the last look, and the hold has done its job once the page
 * has changed since the hand-over and then stayed the same for one look (the thread made its
 * stores and left the page alone). Such a page is held until then, however slow the thread is
 * to run, up to FRESH_WATCH_MAX holds: a page given back unwritten would come straight back
 * and, being migratory, lose its mark (PROTOCOL.md, Migratory sharing). A page written with
 * the bytes it had, or whose digest the store happened to keep, is held the longest: a digest
 * that misses a change costs time, never correctness, since delivering a held request at any
 * moment is allowed.
 *
 * The table is direct-mapped by page (FRESH_SLOTS); a page that loses its slot to another is
 * simply not held. The caller computes digests (fresh_digest()) of memory it knows present.
 *
 * This file is part of the pure core: no system calls.
 */
#ifndef UDSM_FRESH_H
#define UDSM_FRESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRESH_SLOTS 256u
#define FRESH_WATCH_MAX 4u /* a watched page's hold: at most this many times hold_ns */

struct fresh_slot {
	uint64_t page;  /* UINT64_MAX: empty */
	uint64_t until; /* ns: the hold's end */
	uint64_t sum;   /* digest as handed over */
	uint64_t seen;  /* digest at the last look */
	bool watch;     /* handed over writable: its stores may end the hold */
};

struct fresh {
	struct fresh_slot s[FRESH_SLOTS];
};

/** fresh_init() - an empty table. */
void fresh_init(struct fresh *f);

/**
 * fresh_mark() - @page was handed to a waiting thread at @now: hold requests for it until
 * @now + @hold_ns, or, if @watch (handed over writable, @sum the digest of the bytes handed
 * over), until its stores are seen or @now + FRESH_WATCH_MAX x @hold_ns.
 */
void fresh_mark(struct fresh *f, uint64_t page, uint64_t now, uint64_t hold_ns, bool watch,
		uint64_t sum);

/** fresh_until() - when the hold on @page ends (ns), 0 if it has none. */
uint64_t fresh_until(const struct fresh *f, uint64_t page);

/** fresh_watched() - whether a look at @page (fresh_look()) can end its hold early. */
bool fresh_watched(const struct fresh *f, uint64_t page);

/**
 * fresh_look() - the watched @page's digest is @sum now. Returns true if it has changed since
 * the hand-over and is the same as at the previous look: the hold may end.
 */
bool fresh_look(struct fresh *f, uint64_t page, uint64_t sum);

/**
 * fresh_digest() - a digest of @len bytes at @data (NULL: zeros; @len a multiple of 64): a
 * sum and an exclusive or per lane of eight 64-bit words, about 0.25 us for 4 KiB. Equal
 * bytes give equal digests.
 */
uint64_t fresh_digest(const void *data, size_t len);

#endif /* UDSM_FRESH_H */
