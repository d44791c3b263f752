/* SPDX-License-Identifier: MIT */
/*
 * place.c - the home map (see place.h and docs/PROTOCOL.md, "Home map").
 */
#include "core/place.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint32_t place_default_chunk(uint64_t npages, unsigned nodes)
{
	uint32_t c = PLACE_CHUNK_DEFAULT;

	while (c > 1 && npages < (uint64_t)c * (nodes ? nodes : 1) * 4)
		c /= 2;
	return c;
}

int place_init(struct place *m, unsigned nodes, uint64_t npages, uint32_t chunk)
{
	if (!nodes || !npages || chunk > PLACE_CHUNK_MAX)
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	m->nodes = nodes;
	m->npages = npages;
	m->chunk = chunk ? chunk : place_default_chunk(npages, nodes);
	return 0;
}

void place_fini(struct place *m)
{
	free(m->r);
	m->r = NULL;
	m->n = m->cap = 0;
}

int place_check(const struct place *m, int policy)
{
	if (policy == PLACE_BLOCK || policy == PLACE_CYCLIC || policy == PLACE_DEFAULT)
		return 0;
	return policy >= 0 && (unsigned)policy < m->nodes ? 0 : -EINVAL;
}

/* The index of the first range that ends after @page (n if none). */
static uint32_t find(const struct place *m, uint64_t page)
{
	uint32_t lo = 0, hi = m->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (m->r[mid].first + m->r[mid].count <= page)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int place_set(struct place *m, uint64_t first, uint64_t count, int policy)
{
	uint64_t end = first + count;
	uint32_t i, j, keep_lo, keep_hi, add;
	struct place_range lo_part = { 0 }, hi_part = { 0 };
	bool has_lo = false, has_hi = false;

	if (!count || first >= m->npages || count > m->npages - first || place_check(m, policy))
		return -EINVAL;
	/* Ranges [i, j) overlap [first, end); the first and the last may stick out. */
	i = find(m, first);
	for (j = i; j < m->n && m->r[j].first < end; j++)
		;
	if (i < j && m->r[i].first < first) {
		lo_part = m->r[i];
		lo_part.count = first - lo_part.first;
		has_lo = true;
	}
	if (i < j && m->r[j - 1].first + m->r[j - 1].count > end) {
		hi_part = m->r[j - 1];
		hi_part.count = hi_part.first + hi_part.count - end;
		hi_part.first = end;
		has_hi = true;
	}
	keep_lo = has_lo;
	keep_hi = has_hi;
	add = policy == PLACE_DEFAULT ? 0 : 1;
	uint32_t nn = m->n - (j - i) + keep_lo + keep_hi + add;
	if (nn > m->cap) {
		uint32_t ncap = m->cap ? m->cap * 2 : 8;
		struct place_range *r;

		while (ncap < nn)
			ncap *= 2;
		r = realloc(m->r, (size_t)ncap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		m->r = r;
		m->cap = ncap;
	}
	/* Move the tail [j, n) to its place, then write the new middle. */
	uint32_t mid = keep_lo + add + keep_hi;
	memmove(&m->r[i + mid], &m->r[j], (size_t)(m->n - j) * sizeof(*m->r));
	m->n = nn;
	if (has_lo)
		m->r[i++] = lo_part;
	if (add)
		m->r[i++] = (struct place_range){ .first = first, .count = count, .base = first,
						  .span = count, .policy = policy };
	if (has_hi)
		m->r[i++] = hi_part;
	return 0;
}

/* The default layout's origin of @page. */
static unsigned dflt(const struct place *m, uint64_t page)
{
	return (unsigned)((page / m->chunk) % m->nodes);
}

/* The origin of the page at @off from the start of range @r as placed (base). */
static unsigned in_range(const struct place *m, const struct place_range *r, uint64_t off)
{
	switch (r->policy) {
	case PLACE_BLOCK:
		/* The largest i with floor(i * span / nodes) <= off. */
		return (unsigned)(((off + 1) * m->nodes - 1) / r->span);
	case PLACE_CYCLIC:
		return (unsigned)(off % m->nodes);
	default:
		return (unsigned)r->policy;
	}
}

unsigned place_origin(const struct place *m, uint64_t page)
{
	uint32_t i = m->n ? find(m, page) : 0;

	if (i < m->n && m->r[i].first <= page)
		return in_range(m, &m->r[i], page - m->r[i].base);
	return dflt(m, page);
}

uint64_t place_run_end(const struct place *m, uint64_t page)
{
	uint32_t i = m->n ? find(m, page) : 0;
	uint64_t end;

	if (i < m->n && m->r[i].first <= page) {
		const struct place_range *r = &m->r[i];
		uint64_t off = page - r->base;

		switch (r->policy) {
		case PLACE_BLOCK: {
			uint64_t k = in_range(m, r, off) + 1; /* the next share's start */

			end = r->base + k * r->span / m->nodes;
			return end < r->first + r->count ? end : r->first + r->count;
		}
		case PLACE_CYCLIC:
			return page + 1;
		default:
			return r->first + r->count;
		}
	}
	end = (page / m->chunk + 1) * m->chunk;
	if (i < m->n && m->r[i].first < end)
		end = m->r[i].first;
	return end < m->npages ? end : m->npages;
}
