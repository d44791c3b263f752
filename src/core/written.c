/* SPDX-License-Identifier: MIT */
/*
 * written.c - written ranges of a page (see written.h).
 */
#include "core/written.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT64_MAX

static inline uint64_t word_at(const void *p, uint32_t i)
{
	uint64_t w = 0;

	if (p)
		memcpy(&w, (const uint8_t *)p + (size_t)i * 8, 8);
	return w;
}

bool warg_known(uint64_t a)
{
	return WARG_MODE(a) == WARG_COARSE || WARG_MODE(a) == WARG_FINE;
}

bool warg_changed(uint64_t a)
{
	if (WARG_MODE(a) == WARG_COARSE)
		return (uint32_t)a != 0;
	return WARG_MODE(a) == WARG_FINE;
}

static const uint8_t zero_line[64];

/*
 * The warg of @now against @was (NULL: zeros). With @update, @was (non-NULL) is made equal to
 * @now on the way, line by line, copying only the lines that differ. Lines (64 bytes) are
 * compared with memcmp first: most of a page is usually unchanged.
 */
static uint64_t diff(uint8_t *update, const void *was, const void *now, uint32_t ps)
{
	uint32_t first = UINT32_MAX, last = 0, chunk = ps / 32;
	uint64_t fine = 0, coarse = 0;

	for (uint32_t off = 0; off < ps; off += 64) {
		const void *a = was ? (const uint8_t *)was + off : zero_line;
		const void *b = now ? (const uint8_t *)now + off : zero_line;
		uint32_t len = ps - off < 64 ? ps - off : 64;

		if (!memcmp(a, b, len))
			continue;
		for (uint32_t i = off / 8; i < (off + len) / 8; i++) {
			if (word_at(was, i) == word_at(now, i))
				continue;
			if (first == UINT32_MAX)
				first = i;
			last = i;
			coarse |= (uint64_t)1 << ((size_t)i * 8 / chunk);
			if (i - first < WARG_FINE_WORDS)
				fine |= (uint64_t)1 << (i - first);
		}
		if (update)
			memcpy(update + off, b, len);
	}
	if (first == UINT32_MAX)
		return (uint64_t)WARG_COARSE << 62; /* known: nothing changed */
	if (last - first < WARG_FINE_WORDS && first < (1u << 14))
		return (uint64_t)WARG_FINE << 62 | (uint64_t)first << 48 | fine;
	return (uint64_t)WARG_COARSE << 62 | coarse;
}

uint64_t warg_diff(const void *was, const void *now, uint32_t ps)
{
	return diff(NULL, was, now, ps);
}

/* Append [s, e) to @out, merging with the previous range when they touch. */
static size_t push(struct wr_range *out, size_t n, size_t max, uint32_t s, uint32_t e)
{
	if (n && out[n - 1].end == s) {
		out[n - 1].end = e;
		return n;
	}
	if (n < max)
		out[n++] = (struct wr_range){ s, e };
	else if (n)
		out[n - 1].end = e; /* out of room: widen the last one (never narrower) */
	return n;
}

size_t warg_ranges(uint64_t a, uint32_t ps, struct wr_range *out, size_t max)
{
	size_t n = 0;

	if (!max)
		return 0;
	if (WARG_MODE(a) == WARG_COARSE) {
		uint32_t chunk = ps / 32;

		for (uint32_t i = 0; i < 32; i++)
			if (a & ((uint64_t)1 << i))
				n = push(out, n, max, i * chunk, (i + 1) * chunk);
	} else if (WARG_MODE(a) == WARG_FINE) {
		uint32_t w0 = (uint32_t)(a >> 48) & 0x3fffu;

		for (uint32_t i = 0; i < WARG_FINE_WORDS; i++) {
			uint32_t s = (w0 + i) * 8;

			if ((a & ((uint64_t)1 << i)) && s < ps)
				n = push(out, n, max, s, s + 8);
		}
	}
	return n;
}

bool warg_overlap(uint64_t a, uint64_t b, uint32_t ps)
{
	struct wr_range ra[48], rb[48];
	size_t na = warg_ranges(a, ps, ra, 48), nb = warg_ranges(b, ps, rb, 48);

	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			if (ra[i].start < rb[j].end && rb[j].start < ra[i].end)
				return true;
	return false;
}

/* ------------------------------------------------------------------------------------------
 * Writer side.
 */

struct wtrack {
	uint32_t ps;
	uint64_t slot_page[WT_SLOTS]; /* NONE: free or invalid */
	uint8_t *copies;              /* WT_SLOTS pages */
	struct {
		uint64_t page;
		uint64_t n;
	} filter[WT_FILTER];
};

static inline uint64_t mix(uint64_t p)
{
	p *= 0x9e3779b97f4a7c15ull;
	return p ^ (p >> 29);
}

int wtrack_create(uint32_t ps, struct wtrack **out)
{
	struct wtrack *w;

	if (!ps || ps % 32 || ps % 8)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->copies = malloc((size_t)WT_SLOTS * ps);
	if (!w->copies) {
		free(w);
		return -ENOMEM;
	}
	w->ps = ps;
	for (unsigned i = 0; i < WT_SLOTS; i++)
		w->slot_page[i] = NONE;
	for (unsigned i = 0; i < WT_FILTER; i++)
		w->filter[i].page = NONE;
	*out = w;
	return 0;
}

void wtrack_destroy(struct wtrack *w)
{
	if (!w)
		return;
	free(w->copies);
	free(w);
}

void wtrack_installed(struct wtrack *w, uint64_t page, const void *data)
{
	uint64_t h = mix(page);
	unsigned f = (unsigned)(h % WT_FILTER), s = (unsigned)((h >> 32) % WT_SLOTS);
	uint8_t *copy = w->copies + (size_t)s * w->ps;

	if (w->filter[f].page != page) {
		w->filter[f].page = page;
		w->filter[f].n = 0;
	}
	w->filter[f].n++;
	if (w->filter[f].n < WT_MIN_ACQ) {
		/* Not worth a copy (yet). A copy of this page from an earlier acquisition (the
		 * filter entry was taken by another page meanwhile) is stale now: forget it. */
		if (w->slot_page[s] == page)
			w->slot_page[s] = NONE;
		return;
	}
	if (data)
		memcpy(copy, data, w->ps);
	else
		memset(copy, 0, w->ps);
	w->slot_page[s] = page;
}

uint64_t wtrack_written(struct wtrack *w, uint64_t page, const void *data)
{
	unsigned s = (unsigned)((mix(page) >> 32) % WT_SLOTS);
	uint8_t *copy = w->copies + (size_t)s * w->ps;
	uint64_t a;

	if (w->slot_page[s] != page)
		return WARG_UNKNOWN;
	a = diff(copy, copy, data, w->ps); /* the copy becomes @data */
	return a;
}
