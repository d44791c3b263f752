/* SPDX-License-Identifier: MIT */
/*
 * tsan.h - what ThreadSanitizer must be told about the DSM's own data flow. Without
 * -fsanitize=thread everything here compiles to nothing.
 *
 * Application threads read and write the region directly; the service thread never stores to
 * it (pages arrive with UFFDIO_COPY: the kernel writes them) but it does read it: a page it
 * sends (a FETCH served by the owner, a home serving its own read-only copy) is read through
 * the application's mapping. What orders those reads against the application's stores is the
 * kernel: the page is write-protected or read-only before the service thread reads it, and a
 * store after that faults and waits until the service thread has finished with the page.
 * TSan cannot see write protection, faults or UFFDIO_WAKE, and an application thread runs no
 * code of ours between a store and the fault that would order it, so there is nothing to hang
 * an __tsan_release on: every such read would be reported as a race with the application's
 * last store, and the application's next store as a race with the read.
 *
 * tsan_page_snapshot() is the one place where the service thread reads region memory: it
 * copies the page into a per-thread buffer with TSan's access recording switched off for
 * that one memcpy, and the engine reads the copy. Races between application threads on
 * region memory, and everything else the service thread does, stay fully checked. That
 * includes two threads of one process that share a region word through the DSM alone (a
 * store, the page taken by another node and given back, a load): TSan reports them, and
 * rightly, since plain accesses from two threads with nothing ordering them are a data race
 * in C whatever the pages did in between; such words need atomics or a lock.
 */
#ifndef UDSM_TSAN_H
#define UDSM_TSAN_H

#include <stddef.h>

#if defined(__SANITIZE_THREAD__)
#define UDSM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UDSM_TSAN 1
#endif
#endif

/*
 * Where node 0 asks for the region (cluster.c). The usual hint, 0x300000000000, lies in the
 * range x86-64 TSan keeps for its metadata: the kernel would place the region among the
 * libraries and thread stacks instead, where a joining process may have something mapped
 * already (UDSM_EADDR, seen as a flaky 3-node demo). Under TSan the region goes to 64 GiB:
 * application memory for TSan, far below PIE binaries, libraries and stacks, with room for
 * the largest region (UDSM_REGION_MAX, 64 GiB) below TSan's shadow at 0x8000000000.
 */
#if defined(UDSM_TSAN) && defined(__x86_64__)
#define TSAN_REGION_HINT 0x1000000000ull
#endif

#ifdef UDSM_TSAN
/**
 * tsan_page_snapshot() - the contents of @len bytes of region memory at @addr, read by the
 * service thread while the page is read-only for the application. Returns a copy valid until
 * the calling thread's next call, or @addr itself if no buffer could be allocated (then TSan
 * may report the read).
 */
const void *tsan_page_snapshot(const void *addr, size_t len);
#else
static inline const void *tsan_page_snapshot(const void *addr, size_t len)
{
	(void)len;
	return addr;
}
#endif

#endif /* UDSM_TSAN_H */
