/* SPDX-License-Identifier: MIT */
/*
 * uring.h - several sends on several sockets in one system call (an io_uring of our own,
 * set up with raw system calls: no liburing).
 *
 * Why: a node that answers or releases several peers at once (a barrier's release, the
 * invalidations of an upgrade) wrote each peer's output with its own send(). Each send wakes
 * a peer; one whose thread shares this CPU took the CPU as that send returned, and the sends
 * after it waited for this thread to run again (docs/PERFORMANCE.md 3.13, 3.23). Inside one
 * io_uring_enter() every send is made before the system call returns, so every peer has its
 * message before any of them runs here; and a guest whose system calls cost 1 us pays one.
 *
 * Only non-blocking sends (MSG_DONTWAIT: a full socket answers -EAGAIN, nothing is left
 * queued in the kernel), each completed before uring_send() returns, so the caller's buffers
 * are free again at once. Where io_uring is not available (an old kernel, a seccomp filter,
 * kernel.io_uring_disabled), uring_open() fails and the caller sends one by one.
 *
 * Locking: one thread at a time (the node's turn).
 */
#ifndef UDSM_OS_URING_H
#define UDSM_OS_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct uring {
	int fd; /* -1: none */
	unsigned entries;
	uint64_t calls; /* uring_send() calls: tags each call's completions */
	void *sq_ring, *cq_ring;
	size_t sq_len, cq_len;
	struct io_uring_sqe *sqes;
	size_t sqes_len;
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
};

struct uring_send {
	int fd;
	const void *buf;
	size_t len;
	ssize_t res; /* out: bytes sent, or -errno */
};

/** uring_open() - a ring for up to @entries sends per call: 0 or -errno (u->fd is -1). */
int uring_open(struct uring *u, unsigned entries);
/** uring_close() - release it (idempotent). */
void uring_close(struct uring *u);
/**
 * uring_send() - send v[i].len bytes of v[i].buf on v[i].fd (MSG_NOSIGNAL | MSG_DONTWAIT)
 * for every i < @n <= entries, in one system call. Each v[i].res says what happened: the
 * bytes sent (maybe fewer than asked), -errno of the send (-EAGAIN: the socket is full), or
 * -ECANCELED: the kernel did not take that send, nothing was sent (send it another way).
 * Returns 0 when the kernel took at least one send, else -errno of the call (-EAGAIN,
 * -ENOMEM: try again later; -EINVAL: a closed ring or @n too large); the v[i].res are set in
 * every case. -EIO in a v[i].res: the ring failed after the kernel took that send, and what
 * it sent is unknown (cannot happen with these non-blocking sends; the connection cannot be
 * trusted then). Nothing is left pending in the ring when it returns.
 */
int uring_send(struct uring *u, struct uring_send *v, unsigned n);

#endif /* UDSM_OS_URING_H */
