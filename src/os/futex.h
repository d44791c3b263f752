/* SPDX-License-Identifier: MIT */
/*
 * futex.h - waiting on and waking a 32-bit word shared by the threads of one process: what a
 * condition variable does, without the mutex it must take again on the way out (glibc marks
 * that mutex contended after a wait, so its next unlock is one more system call).
 */
#ifndef UDSM_FUTEX_H
#define UDSM_FUTEX_H

#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleep while *@w holds @v (it may return early: the caller checks again). */
static inline void futex_wait(uint32_t *w, uint32_t v)
{
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

/* As futex_wait(), for at most @ms milliseconds. */
static inline void futex_wait_ms(uint32_t *w, uint32_t v, unsigned ms)
{
	struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, &t, NULL, 0);
}

/* Wake every thread sleeping on @w. A private wake only names the address: it reads no
 * memory, so it may follow the last access to memory that is freed meanwhile. */
static inline void futex_wake_all(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

#endif /* UDSM_FUTEX_H */
