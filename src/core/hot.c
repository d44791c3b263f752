/* SPDX-License-Identifier: MIT */
/*
 * hot.c - the hot-page table (see hot.h).
 */
#include "core/hot.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/written.h"

#define BIT(n) ((uint64_t)1 << (n))

static void slot_reset(struct hot_slot *s, uint64_t page, uint64_t base)
{
	memset(s, 0, sizeof(*s));
	s->page = page;
	s->transfers = base;
	s->err = base;
	s->last_writer = HOT_NONE;
	for (unsigned i = 0; i < HOT_WRITERS; i++)
		s->w[i].node = HOT_NONE;
}

void hot_init(struct hot *h, uint32_t ps)
{
	memset(h, 0, sizeof(*h));
	h->ps = ps;
	for (unsigned i = 0; i < HOT_SETS * HOT_WAYS; i++)
		slot_reset(&h->slot[i], UINT64_MAX, 0);
}

static unsigned set_of(uint64_t page)
{
	uint64_t x = page * 0x9e3779b97f4a7c15ull;

	return (unsigned)((x ^ (x >> 31)) % HOT_SETS) * HOT_WAYS;
}

const struct hot_slot *hot_find(const struct hot *h, uint64_t page)
{
	const struct hot_slot *set = &h->slot[set_of(page)];

	for (unsigned i = 0; i < HOT_WAYS; i++)
		if (set[i].page == page)
			return &set[i];
	return NULL;
}

static struct hot_slot *lookup(struct hot *h, uint64_t page)
{
	struct hot_slot *set = &h->slot[set_of(page)], *min = NULL;

	for (unsigned i = 0; i < HOT_WAYS; i++) {
		if (set[i].page == page)
			return &set[i];
		if (set[i].page == UINT64_MAX) {
			slot_reset(&set[i], page, 0);
			return &set[i];
		}
		if (!min || set[i].transfers < min->transfers)
			min = &set[i];
	}
	/* Space-saving: the least-moved page of the set makes room; the newcomer may have
	 * moved as often before without being counted, so it starts at that count. */
	h->replaced++;
	slot_reset(min, page, min->transfers);
	return min;
}

/* Remember @arg as @node's latest written ranges, most recent writer first. */
static void note_writer(struct hot_slot *s, unsigned node, uint64_t arg)
{
	unsigned i;

	for (i = 0; i < HOT_WRITERS - 1; i++)
		if (s->w[i].node == node)
			break;
	memmove(&s->w[1], &s->w[0], i * sizeof(s->w[0]));
	s->w[0] = (struct hot_writer){ .arg = arg, .node = (uint8_t)node };
}

void hot_moved(struct hot *h, uint64_t page, unsigned from, unsigned to, uint64_t warg)
{
	struct hot_slot *s = lookup(h, page);

	h->transfers++;
	s->transfers++;
	if (to < 64)
		s->nodes |= BIT(to);
	if (from >= 64)
		return;
	s->nodes |= BIT(from);
	if (!warg_known(warg))
		return;
	h->known++;
	if (!warg_changed(warg))
		return; /* held writable, not written (a migratory reader) */
	s->writers |= BIT(from);
	if (s->last_writer != HOT_NONE && s->last_writer != from) {
		if (warg_overlap(warg, s->last_arg, h->ps))
			s->overlap++;
		else
			s->disjoint++;
	}
	s->last_writer = (uint8_t)from;
	s->last_arg = warg;
	note_writer(s, from, warg);
}

static bool is_false_shared(const struct hot_slot *s)
{
	return s->disjoint > s->overlap;
}

uint64_t hot_false_shared(const struct hot *h)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < HOT_SETS * HOT_WAYS; i++)
		n += h->slot[i].page != UINT64_MAX && is_false_shared(&h->slot[i]);
	return n;
}

static int cmp_range(const void *a, const void *b)
{
	const struct udsm_written_range *x = a, *y = b;

	if (x->node != y->node)
		return x->node < y->node ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

void hot_fill(const struct hot *h, const struct hot_slot *s, struct udsm_hot_page *o)
{
	memset(o, 0, sizeof(*o));
	o->page = s->page;
	o->transfers = s->transfers;
	o->transfers_err = s->err;
	o->nodes = s->nodes;
	o->writers = s->writers;
	o->disjoint = s->disjoint;
	o->overlap = s->overlap;
	o->false_sharing = is_false_shared(s);
	for (unsigned i = 0; i < HOT_WRITERS && s->w[i].node != HOT_NONE; i++) {
		struct wr_range r[UDSM_HOT_RANGES];
		size_t room = UDSM_HOT_RANGES - o->nranges;
		size_t n = warg_ranges(s->w[i].arg, h->ps, r, room);

		for (size_t k = 0; k < n; k++)
			o->ranges[o->nranges++] = (struct udsm_written_range){
				.node = s->w[i].node, .start = r[k].start, .end = r[k].end,
			};
	}
	qsort(o->ranges, o->nranges, sizeof(o->ranges[0]), cmp_range);
}

/* Most transfers first; ties by page number, so the order is deterministic. */
static int cmp_slot(const void *a, const void *b)
{
	const struct hot_slot *x = *(const struct hot_slot *const *)a;
	const struct hot_slot *y = *(const struct hot_slot *const *)b;

	if (x->transfers != y->transfers)
		return x->transfers > y->transfers ? -1 : 1;
	return x->page < y->page ? -1 : x->page > y->page;
}

size_t hot_top(const struct hot *h, struct udsm_hot_page *out, size_t max)
{
	const struct hot_slot *v[HOT_SETS * HOT_WAYS];
	size_t n = 0;

	for (unsigned i = 0; i < HOT_SETS * HOT_WAYS; i++)
		if (h->slot[i].page != UINT64_MAX)
			v[n++] = &h->slot[i];
	qsort(v, n, sizeof(v[0]), cmp_slot);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		hot_fill(h, v[i], &out[i]);
	return n;
}
