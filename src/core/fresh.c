/* SPDX-License-Identifier: MIT */
/*
 * fresh.c - the hold on pages just handed to a waiting thread (see fresh.h).
 */
#include "core/fresh.h"

#include <string.h>

void fresh_init(struct fresh *f)
{
	memset(f, 0, sizeof(*f));
	for (unsigned i = 0; i < FRESH_SLOTS; i++)
		f->s[i].page = UINT64_MAX;
}

void fresh_mark(struct fresh *f, uint64_t page, uint64_t now, uint64_t hold_ns, bool watch,
		uint64_t sum)
{
	struct fresh_slot *s = &f->s[page % FRESH_SLOTS];

	s->page = page;
	s->until = now + hold_ns;
	s->until_watch = watch ? now + FRESH_WATCH_MAX * hold_ns : s->until;
	s->watch = watch;
	s->sum = watch ? sum : 0;
	s->next_look = 0;
}

uint64_t fresh_until(const struct fresh *f, uint64_t page, bool modified)
{
	const struct fresh_slot *s = &f->s[page % FRESH_SLOTS];

	if (s->page != page)
		return 0;
	return modified ? s->until_watch : s->until;
}

bool fresh_watched(const struct fresh *f, uint64_t page)
{
	const struct fresh_slot *s = &f->s[page % FRESH_SLOTS];

	return s->page == page && s->watch;
}

bool fresh_look_due(struct fresh *f, uint64_t page, uint64_t now)
{
	struct fresh_slot *s = &f->s[page % FRESH_SLOTS];

	if (s->page != page || !s->watch || now < s->next_look)
		return false;
	s->next_look = now + FRESH_LOOK_NS;
	return true;
}

bool fresh_look(const struct fresh *f, uint64_t page, uint64_t sum)
{
	const struct fresh_slot *s = &f->s[page % FRESH_SLOTS];

	return s->page == page && s->watch && sum != s->sum;
}

uint64_t fresh_digest(const void *data, size_t len)
{
	uint64_t add[8] = { 0 }, x[8] = { 0 }, h = 0;
	const uint8_t *b = data;

	for (size_t i = 0; b && i + 64 <= len; i += 64)
		for (unsigned j = 0; j < 8; j++) {
			uint64_t w;

			memcpy(&w, b + i + 8 * j, 8);
			add[j] += w;
			x[j] ^= w;
		}
	for (unsigned j = 0; j < 8; j++)
		h = (h ^ add[j] ^ (x[j] << 1)) * 0xff51afd7ed558ccdull;
	return h;
}
