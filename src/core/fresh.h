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
 * its bytes as handed over, and the hold has done its job as soon as a look finds the page
 * changed (the thread has made a store). While the page stays Modified, it is held until then,
 * however slow the thread is to run, up to FRESH_WATCH_MAX holds: a page given back unwritten
 * would come straight back and, being migratory, lose its mark (PROTOCOL.md, Migratory
 * sharing). A look may come between two stores of one thread: the page then leaves after the
 * first and comes back for the second, one more transfer but never a wrong value. A page
 * written with the bytes it had, or whose digest the store happened to keep, is held the
 * longest: a digest that misses a change costs time, never correctness, since delivering a
 * held request at any moment is allowed.
 *
 * The table is direct-mapped by page (FRESH_SLOTS); a page that loses its slot to another is
 * simply not held. The caller computes digests (fresh_digest()) of bytes it could read
 * safely, and says whether the page is still Modified.
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
#define FRESH_LOOK_NS 5000u /* between two looks at one watched page: a look costs a read */

struct fresh_slot {
	uint64_t page;        /* UINT64_MAX: empty */
	uint64_t until;       /* ns: the hold's end */
	uint64_t until_watch; /* ns: its end while a page handed over writable stays Modified */
	uint64_t sum;         /* digest as handed over */
	uint64_t next_look;   /* ns: no look before (fresh_look_due()) */
	bool watch;           /* handed over writable: its stores may end the hold */
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

/** fresh_until() - when the hold on @page ends (ns), 0 if it has none; @modified: the page
 *  is Modified here now (a page handed over writable is then held longer). */
uint64_t fresh_until(const struct fresh *f, uint64_t page, bool modified);

/** fresh_watched() - whether a look at @page (fresh_look()) can end its hold early. */
bool fresh_watched(const struct fresh *f, uint64_t page);

/**
 * fresh_look_due() - whether the watched @page is due for a look at @now (the first one at
 * once, then at most one every FRESH_LOOK_NS); if so, the next one is due FRESH_LOOK_NS on.
 */
bool fresh_look_due(struct fresh *f, uint64_t page, uint64_t now);

/**
 * fresh_look() - the watched @page's digest is @sum now. Returns true if the page has changed
 * since the hand-over: the hold may end.
 */
bool fresh_look(const struct fresh *f, uint64_t page, uint64_t sum);

/**
 * fresh_digest() - a digest of @len bytes at @data (NULL: zeros; @len a multiple of 64): a
 * sum and an exclusive or per lane of eight 64-bit words, about 0.25 us for 4 KiB. Equal
 * bytes give equal digests.
 */
uint64_t fresh_digest(const void *data, size_t len);

#endif /* UDSM_FRESH_H */
