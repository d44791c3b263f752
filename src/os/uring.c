/* SPDX-License-Identifier: MIT */
/*
 * uring.c - several sends in one system call (see uring.h).
 */
#include "os/uring.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7) /* Linux 5.18 */
#endif
/* One send's length is a 32-bit field: a longer output goes out in several calls. */
#define SEND_MAX (1u << 30)

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
	return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned submit, unsigned complete, unsigned flags)
{
	return (int)syscall(__NR_io_uring_enter, fd, submit, complete, flags, NULL, 0);
}

void uring_close(struct uring *u)
{
	if (u->sqes && u->sqes != MAP_FAILED)
		munmap(u->sqes, u->sqes_len);
	if (u->cq_ring && u->cq_ring != MAP_FAILED && u->cq_ring != u->sq_ring)
		munmap(u->cq_ring, u->cq_len);
	if (u->sq_ring && u->sq_ring != MAP_FAILED)
		munmap(u->sq_ring, u->sq_len);
	if (u->fd >= 0)
		close(u->fd);
	memset(u, 0, sizeof(*u));
	u->fd = -1;
}

int uring_open(struct uring *u, unsigned entries)
{
	struct io_uring_params p;
	int err;

	memset(u, 0, sizeof(*u));
	memset(&p, 0, sizeof(p));
	if (entries > 256)
		entries = 256; /* a send's index takes the low byte of its user_data */
	/* SUBMIT_ALL: an entry refused at submission never stops the ones after it, so the
	 * ring is always empty again when uring_send() returns. */
	p.flags = IORING_SETUP_SUBMIT_ALL;
	u->fd = sys_setup(entries, &p);
	if (u->fd < 0) {
		err = -errno;
		u->fd = -1;
		return err;
	}
	u->entries = p.sq_entries < entries ? p.sq_entries : entries;
	u->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	u->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (u->cq_len > u->sq_len)
			u->sq_len = u->cq_len;
		u->cq_len = u->sq_len;
	}
	u->sq_ring = mmap(NULL, u->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			  u->fd, IORING_OFF_SQ_RING);
	if (u->sq_ring == MAP_FAILED)
		goto fail;
	u->cq_ring = (p.features & IORING_FEAT_SINGLE_MMAP)
			     ? u->sq_ring
			     : mmap(NULL, u->cq_len, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_CQ_RING);
	if (u->cq_ring == MAP_FAILED)
		goto fail;
	u->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
	u->sqes = mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       u->fd, IORING_OFF_SQES);
	if (u->sqes == MAP_FAILED)
		goto fail;
	u->sq_head = (unsigned *)((char *)u->sq_ring + p.sq_off.head);
	u->sq_tail = (unsigned *)((char *)u->sq_ring + p.sq_off.tail);
	u->sq_mask = (unsigned *)((char *)u->sq_ring + p.sq_off.ring_mask);
	u->sq_array = (unsigned *)((char *)u->sq_ring + p.sq_off.array);
	u->cq_head = (unsigned *)((char *)u->cq_ring + p.cq_off.head);
	u->cq_tail = (unsigned *)((char *)u->cq_ring + p.cq_off.tail);
	u->cq_mask = (unsigned *)((char *)u->cq_ring + p.cq_off.ring_mask);
	u->cqes = (struct io_uring_cqe *)((char *)u->cq_ring + p.cq_off.cqes);
	return 0;
fail:
	err = -errno;
	uring_close(u);
	return err;
}

int uring_send(struct uring *u, struct uring_send *v, unsigned n)
{
	unsigned tail, mask, taken, done = 0;
	uint64_t call;
	int r, err = 0;

	for (unsigned i = 0; i < n; i++)
		v[i].res = -ECANCELED;
	if (u->fd < 0 || n > u->entries)
		return -EINVAL;
	tail = *u->sq_tail; /* the ring is empty: head == tail */
	mask = *u->sq_mask;
	call = ++u->calls;
	for (unsigned i = 0; i < n; i++) {
		unsigned idx = (tail + i) & mask;
		struct io_uring_sqe *sqe = &u->sqes[idx];

		memset(sqe, 0, sizeof(*sqe));
		sqe->opcode = IORING_OP_SEND;
		sqe->fd = v[i].fd;
		sqe->addr = (uint64_t)(uintptr_t)v[i].buf;
		sqe->len = v[i].len < SEND_MAX ? (uint32_t)v[i].len : SEND_MAX;
		sqe->msg_flags = MSG_NOSIGNAL | MSG_DONTWAIT;
		sqe->user_data = call << 8 | i; /* this call's, so no stale completion matches */
		u->sq_array[idx] = idx;
	}
	__atomic_store_n(u->sq_tail, tail + n, __ATOMIC_RELEASE);
	do
		r = sys_enter(u->fd, n, n, IORING_ENTER_GETEVENTS);
	while (r < 0 && errno == EINTR && __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE) == tail);
	if (r < 0)
		err = errno == EINTR ? 0 : -errno;
	/*
	 * What the kernel took, whatever the call returned (it may stop early: no memory for a
	 * request): those are sent or failed; the rest never will be, so take them back.
	 */
	taken = __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE) - tail;
	if (taken > n)
		taken = n;
	__atomic_store_n(u->sq_tail, tail + taken, __ATOMIC_RELEASE);
	/* Every send taken is non-blocking, so it completed inside the call; collect them (and
	 * should the wait have been cut short, wait again for the rest). */
	while (done < taken) {
		unsigned head = *u->cq_head, ctail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);

		for (; head != ctail; head++) {
			const struct io_uring_cqe *c = &u->cqes[head & *u->cq_mask];
			unsigned i = (unsigned)(c->user_data & 0xff);

			if (c->user_data >> 8 == call && i < taken && v[i].res == -ECANCELED) {
				v[i].res = c->res;
				done++;
			}
		}
		__atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
		if (done < taken && sys_enter(u->fd, 0, taken - done, IORING_ENTER_GETEVENTS) < 0 &&
		    errno != EINTR) {
			/* Cannot happen with non-blocking sends; should it, what those sends did
			 * is unknown, and their buffers may still be read. */
			for (unsigned i = 0; i < taken; i++)
				if (v[i].res == -ECANCELED)
					v[i].res = -EIO;
			return -errno;
		}
	}
	return taken ? 0 : err;
}
