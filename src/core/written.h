/* SPDX-License-Identifier: MIT */
/*
 * written.h - what a writer changed in a page, and how it tells the page's home.
 *
 * A node that holds a page writable keeps, for pages it acquires again and again, a copy of
 * the contents it received (struct wtrack). When it gives the page up (FETCH), it compares the
 * page with that copy and sends what changed to the home in the @arg of FETCH_REPLY, which the
 * protocol leaves unused (old peers send 0 = unknown). The home uses it to tell false sharing
 * (successive writers change disjoint ranges) from true sharing (core/hot.h).
 *
 * Encoding of the 64-bit written-range word ("warg"):
 *   0                        unknown (old peer, or the page was not tracked)
 *   bits 63..62 = 1 (COARSE) bits 31..0: chunk mask, chunk i = bytes [i*ps/32, (i+1)*ps/32);
 *                            a mask of 0 says "known: nothing changed"
 *   bits 63..62 = 2 (FINE)   bits 61..48: index w0 of the first changed 8-byte word;
 *                            bits 47..0: mask of the changed words w0 .. w0 + 47
 *   bits 63..62 = 3          reserved (read as unknown)
 * FINE is used whenever the changes fit in 48 words (384 bytes): it tells two counters in one
 * cache line apart, the classic false-sharing layout. Otherwise COARSE, at ps/32 bytes.
 *
 * This file is part of the pure core: no system calls.
 */
#ifndef UDSM_WRITTEN_H
#define UDSM_WRITTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WARG_UNKNOWN 0u
#define WARG_MODE(a) ((unsigned)((a) >> 62))
#define WARG_COARSE 1u
#define WARG_FINE 2u
#define WARG_FINE_WORDS 48u

/** A byte range [start, end) of a page. */
struct wr_range {
	uint32_t start, end;
};

/** warg_known() - does @a say anything (changed or not)? */
bool warg_known(uint64_t a);
/** warg_changed() - does @a say something changed? */
bool warg_changed(uint64_t a);
/** warg_diff() - the warg of @now against @was (both @ps bytes; NULL = zeros). */
uint64_t warg_diff(const void *was, const void *now, uint32_t ps);
/** warg_ranges() - decode @a for pages of @ps bytes into at most @max merged ranges, in
 *  order; returns how many (0 if unknown or unchanged). */
size_t warg_ranges(uint64_t a, uint32_t ps, struct wr_range *out, size_t max);
/** warg_overlap() - do the ranges of @a and @b share a byte? (false if either is unknown) */
bool warg_overlap(uint64_t a, uint64_t b, uint32_t ps);

/*
 * Writer side: copies of what this node received, for pages it acquires repeatedly.
 * A filter counts acquisitions per page (direct-mapped, WT_FILTER entries); from the second
 * acquisition on, each install takes a copy into one of WT_SLOTS slots (direct-mapped by
 * page). Memory: WT_SLOTS * page size + 16 * WT_FILTER bytes (144 KiB with 4 KiB pages).
 * Locking: service thread only.
 */
#define WT_SLOTS 32u
#define WT_FILTER 1024u
#define WT_MIN_ACQ 2u

struct wtrack;

/** wtrack_create() - 0, -EINVAL or -ENOMEM. */
int wtrack_create(uint32_t ps, struct wtrack **out);
void wtrack_destroy(struct wtrack *w);
/** wtrack_installed() - @page was installed here with @data (NULL: zeros). */
void wtrack_installed(struct wtrack *w, uint64_t page, const void *data);
/** wtrack_written() - @page, whose contents are now @data (NULL: zeros), is given up: the
 *  warg of what changed since it was received, or WARG_UNKNOWN. The copy becomes @data (a
 *  node that keeps the page Shared and later upgrades starts from what it sent). */
uint64_t wtrack_written(struct wtrack *w, uint64_t page, const void *data);

#endif /* UDSM_WRITTEN_H */
