/* SPDX-License-Identifier: MIT */
/*
 * conn.c - the data path of one peer connection (see conn.h).
 */
#define LOG_PREFIX "conn: "
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define OUT_MIN_CAP 65536u
#define RECV_CHUNK 65536u

void conn_init(struct conn *c, size_t hwm, size_t max, size_t park_max)
{
	memset(c, 0, sizeof(*c));
	c->hwm = hwm;
	c->max = max;
	c->park_max = park_max;
}

void conn_free(struct conn *c)
{
	while (c->park_n)
		conn_unpark(c);
	free(c->park);
	free(c->out);
	c->park = NULL;
	c->out = NULL;
	c->park_head = c->park_cap = 0;
	c->out_len = c->out_off = c->out_cap = 0;
}

/* Room for @n more bytes at out_len, within the hard bound. */
static int out_reserve(struct conn *c, size_t n)
{
	size_t ncap;
	uint8_t *nb;

	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len - c->out_off + n > c->max)
		return -ENOBUFS;
	if (c->out_len + n <= c->out_cap)
		return 0;
	/* Slide the unsent bytes down before growing: under a steady trickle the buffer then
	 * stays the size of the backlog, not of everything ever queued. */
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
		if (c->out_len + n <= c->out_cap)
			return 0;
	}
	ncap = c->out_cap ? c->out_cap : OUT_MIN_CAP;
	while (ncap < c->out_len + n)
		ncap *= 2;
	nb = realloc(c->out, ncap);
	if (!nb)
		return -ENOMEM;
	c->out = nb;
	c->out_cap = ncap;
	return 0;
}

int conn_queue(struct conn *c, const struct wire_msg *m, const void *data)
{
	int err = out_reserve(c, WIRE_HDR_LEN + m->len);

	if (err)
		return err;
	wire_encode_hdr(c->out + c->out_len, m);
	if (m->len)
		memcpy(c->out + c->out_len + WIRE_HDR_LEN, data, m->len);
	c->out_len += WIRE_HDR_LEN + m->len;
	return 0;
}

int conn_flush(struct conn *c, int fd)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		c->sends++;
		if (w > 0) {
			c->out_off += (size_t)w;
			c->bytes_out += (uint64_t)w;
			continue; /* a short write usually means full: the next send says so */
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->full++;
			return -EAGAIN;
		}
		return w < 0 ? -errno : -EPIPE;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

ssize_t conn_recv(struct conn *c, int fd, struct wire_dec *dec, size_t *room)
{
	size_t held = wire_dec_pending(dec);
	/* Never more than the decoder may hold: a message as large as it allows (a set of
	 * 16 KiB pages, 4 MiB less a page) arrives in reads of whatever size TCP gives. */
	size_t want = held < WIRE_BUFFER_MAX && WIRE_BUFFER_MAX - held < RECV_CHUNK
			      ? WIRE_BUFFER_MAX - held : RECV_CHUNK;
	uint8_t *buf;
	ssize_t r;
	int err = wire_dec_space(dec, want, &buf, room);

	if (err)
		return err;
	if (*room > want)
		*room = want;
	do
		r = recv(fd, buf, *room, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ECONNRESET;
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	wire_dec_commit(dec, (size_t)r);
	c->bytes_in += (uint64_t)r;
	return r;
}

int conn_park(struct conn *c, const struct wire_msg *m)
{
	struct conn_parked *slot;

	if (c->park_n == c->park_cap) {
		size_t ncap = c->park_cap ? c->park_cap * 2 : 64;
		struct conn_parked *np = malloc(ncap * sizeof(*np));

		if (!np)
			return -ENOMEM;
		for (size_t i = 0; i < c->park_n; i++) /* unroll the ring */
			np[i] = c->park[(c->park_head + i) % c->park_cap];
		free(c->park);
		c->park = np;
		c->park_cap = ncap;
		c->park_head = 0;
	}
	slot = &c->park[(c->park_head + c->park_n) % c->park_cap];
	slot->m = *m;
	slot->data = NULL;
	if (m->len) {
		slot->data = malloc(m->len);
		if (!slot->data)
			return -ENOMEM;
		memcpy(slot->data, m->payload, m->len);
	}
	slot->m.payload = slot->data;
	c->park_n++;
	c->parked++;
	return 0;
}

const struct wire_msg *conn_parked_head(const struct conn *c)
{
	return c->park_n ? &c->park[c->park_head].m : NULL;
}

void conn_unpark(struct conn *c)
{
	if (!c->park_n)
		return;
	free(c->park[c->park_head].data);
	c->park_head = (c->park_head + 1) % c->park_cap;
	c->park_n--;
}
