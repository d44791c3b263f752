/* SPDX-License-Identifier: MIT */
/*
 * conn.h - the data path of one peer connection: a bounded output buffer with a high-water
 * mark, non-blocking flushes that report a full socket instead of retrying it, receives
 * straight into the wire decoder, and a queue of received messages parked until the output
 * toward that peer drains (flow control, see node.c and docs/PROTOCOL.md).
 *
 * The module knows sockets and messages, not the protocol: which messages may be parked is
 * the caller's decision. It never calls epoll: conn_flush() says -EAGAIN and the caller
 * waits for EPOLLOUT. Nothing here loops on a socket that cannot make progress.
 *
 * The socket itself (@fd) and the decoder stay with the caller's peer record, which the
 * cluster formation fills in before the data path starts; they are passed in.
 *
 * Locking: a conn belongs to one thread (the node's service thread once it runs).
 */
#ifndef UDSM_CONN_H
#define UDSM_CONN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/wire.h"

/* A received message waiting to be delivered, with its own copy of the payload. */
struct conn_parked {
	struct wire_msg m;
	uint8_t *data;
};

/*
 * Invariants: out_off <= out_len <= out_cap; out_len - out_off <= max;
 *             park holds park_n messages from park_head on (a ring of park_cap).
 */
struct conn {
	uint8_t *out; /* bytes queued for the socket: [out_off, out_len) */
	size_t out_len, out_off, out_cap;
	size_t hwm; /* above this many queued bytes the connection is congested */
	size_t max; /* hard bound on queued bytes: beyond it conn_queue() refuses */

	struct conn_parked *park;
	size_t park_head, park_n, park_cap;
	size_t park_max; /* messages parked before the caller should stop reading */

	uint64_t sends;      /* send() calls, successful or not */
	uint64_t full;       /* of which found the socket full (EAGAIN) */
	uint64_t bytes_out;  /* bytes the socket took */
	uint64_t bytes_in;   /* bytes received */
	uint64_t parked;     /* messages ever parked */
};

/** conn_init() - an empty connection with these bounds (no allocation yet). */
void conn_init(struct conn *c, size_t hwm, size_t max, size_t park_max);
/** conn_free() - release the buffers and parked messages; the conn is empty afterwards. */
void conn_free(struct conn *c);

/** conn_pending() - bytes queued and not yet taken by the socket. */
static inline size_t conn_pending(const struct conn *c)
{
	return c->out_len - c->out_off;
}
/** conn_out() - the first of the conn_pending() bytes. */
static inline const uint8_t *conn_out(const struct conn *c)
{
	return c->out + c->out_off;
}
/** conn_sent() - a send the caller made of the pending bytes (os/uring.h) took @n of them;
 *  @res: what it returned (-EAGAIN: the socket was full). */
static inline void conn_sent(struct conn *c, size_t n, ssize_t res)
{
	c->sends++;
	if (res == -EAGAIN)
		c->full++;
	c->out_off += n;
	c->bytes_out += n;
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
}
/** conn_congested() - more than the high-water mark is queued. */
static inline bool conn_congested(const struct conn *c)
{
	return conn_pending(c) > c->hwm;
}
/** conn_park_full() - the parked queue reached its bound: stop reading the socket. */
static inline bool conn_park_full(const struct conn *c)
{
	return c->park_n >= c->park_max;
}

/**
 * conn_queue() - append @m (header, then @m->len bytes at @data) to the output buffer.
 * No system call. Returns 0; -ENOBUFS if the queued bytes would exceed the hard bound;
 * -ENOMEM. On error nothing is queued: the caller must treat the peer as lost, since the
 * message cannot be delivered.
 */
int conn_queue(struct conn *c, const struct wire_msg *m, const void *data);

/**
 * conn_flush() - write queued bytes to @fd until the buffer is empty or the socket is full.
 * Returns 0 (everything written), -EAGAIN (the socket is full: wait for EPOLLOUT, the rest
 * stays queued), or another -errno (the connection is broken). One send() per call in the
 * common case, never a retry of a full socket.
 */
int conn_flush(struct conn *c, int fd);

/**
 * conn_recv() - one recv() from @fd straight into @dec, at most 64 KiB.
 * Returns the bytes received (> 0), -EAGAIN if none are ready, -ECONNRESET at end of
 * stream, the decoder's error (-ENOBUFS, -ENOMEM) or another -errno.
 */
ssize_t conn_recv(struct conn *c, int fd, struct wire_dec *dec, size_t *room);

/** conn_park() - append a received message (its payload is copied). 0 or -ENOMEM. */
int conn_park(struct conn *c, const struct wire_msg *m);
/** conn_parked_head() - the oldest parked message, or NULL. Valid until the next pop. */
const struct wire_msg *conn_parked_head(const struct conn *c);
/** conn_unpark() - drop the oldest parked message (after delivering it). */
void conn_unpark(struct conn *c);

#endif /* UDSM_CONN_H */
