/* SPDX-License-Identifier: MIT */
/*
 * tsan.c - the ThreadSanitizer side of tsan.h; meson.build compiles it only into TSan builds.
 */
#include "os/tsan.h"

#ifdef UDSM_TSAN
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);

struct snap {
	void *buf;
	size_t cap;
};

static pthread_key_t snap_key;
static pthread_once_t snap_once = PTHREAD_ONCE_INIT;
static int snap_key_err;

static void snap_free(void *p)
{
	struct snap *s = p;

	free(s->buf);
	free(s);
}

static void snap_init(void)
{
	snap_key_err = pthread_key_create(&snap_key, snap_free);
}

const void *tsan_page_snapshot(const void *addr, size_t len)
{
	struct snap *s;

	if (pthread_once(&snap_once, snap_init) || snap_key_err)
		return addr;
	s = pthread_getspecific(snap_key);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s || pthread_setspecific(snap_key, s)) {
			free(s);
			return addr;
		}
	}
	if (s->cap < len) {
		void *nb = malloc(len);

		if (!nb)
			return addr;
		free(s->buf);
		s->buf = nb;
		s->cap = len;
	}
	/* Ordered against the application's stores by write protection, which TSan cannot see
	 * (tsan.h): neither check this read nor remember it. */
	__tsan_ignore_thread_begin();
	memcpy(s->buf, addr, len);
	__tsan_ignore_thread_end();
	return s->buf;
}
#endif
