/* SPDX-License-Identifier: MIT */
/*
 * test_conn.c - the connection module (src/conn.c) against a real TCP connection on loopback
 * whose sender has a tiny SO_SNDBUF and whose receiver stops reading (its receive buffer
 * stays at the default: a tiny receive window on loopback reopens only on the sender's
 * backed-off zero-window probes, which would make the final drain take seconds):
 *  - a full socket is reported once (-EAGAIN), never retried in a loop: the sender waits for
 *    EPOLLOUT like the node does, and the number of send() calls and the CPU time stay small
 *    while the receiver reads nothing;
 *  - the output buffer is bounded: past peer_buffer_max conn_queue() refuses (-ENOBUFS, on
 *    which the node declares the peer lost), the buffer does not grow past the bound;
 *  - once the receiver reads again everything arrives intact and in order;
 *  - the parked queue keeps order and payloads across growth.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "conn.h"

#define PS 4096u

static void tcp_pair(int *snd, int *rcv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int small = 4096, lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	*snd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(*snd >= 0);
	setsockopt(*snd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	assert_int_equal(connect(*snd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	*rcv = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*rcv >= 0);
	close(lfd);
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void fill_page(uint8_t *p, uint64_t seq)
{
	for (size_t i = 0; i < PS; i += 8)
		memcpy(p + i, &seq, 8);
}

static void test_stalled_reader(void **state)
{
	const size_t max = 1u << 20;
	struct conn c;
	uint8_t page[PS];
	uint64_t seq = 0;
	int snd, rcv, ep, err = 0;
	double cpu0;
	unsigned waits = 0;

	(void)state;
	tcp_pair(&snd, &rcv);
	ep = epoll_create1(EPOLL_CLOEXEC);
	assert_true(ep >= 0);
	struct epoll_event ev = { .events = EPOLLOUT };
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, snd, &ev), 0);
	conn_init(&c, max / 16, max, 64);

	/* Queue pages until the bound refuses one, flushing like the service loop: once per
	 * batch, and on a full socket only after EPOLLOUT (with the peer not reading, it never
	 * comes: we give it 20 ms per batch). */
	cpu0 = cpu_seconds();
	for (;;) {
		struct wire_msg m = { .type = WIRE_DATA, .len = PS, .page = seq };

		fill_page(page, seq);
		err = conn_queue(&c, &m, page);
		if (err)
			break;
		seq++;
		if (seq % 16 == 0 && conn_flush(&c, snd) == -EAGAIN) {
			struct epoll_event out;

			waits++;
			(void)epoll_wait(ep, &out, 1, 20);
		}
	}
	assert_int_equal(err, -ENOBUFS);
	/* Nothing queued beyond the bound, and the buffer did not grow past twice of it. */
	assert_true(conn_pending(&c) <= max);
	assert_true(conn_pending(&c) + WIRE_HDR_LEN + PS > max);
	assert_true(c.out_cap <= 2 * max);
	assert_true(conn_congested(&c));
	/* No busy loop: a send per flush and at most one more per full socket. */
	assert_true(c.sends <= seq / 16 * 2 + 2);
	assert_true(c.full >= 1);
	print_message("queued %llu pages; %llu sends, %llu full, %u waits, %.3f s CPU\n",
		      (unsigned long long)seq, (unsigned long long)c.sends,
		      (unsigned long long)c.full, waits, cpu_seconds() - cpu0);
	assert_true(cpu_seconds() - cpu0 < 1.0);

	/* The receiver reads again: everything queued arrives in order, intact. */
	struct wire_dec dec;
	uint64_t got = 0;

	wire_dec_init(&dec, PS);
	while (got < seq) {
		struct wire_msg m;
		size_t room;
		int r;

		while ((r = wire_dec_next(&dec, &m)) == 0) {
			uint64_t v;

			assert_int_equal(m.type, WIRE_DATA);
			assert_int_equal(m.page, got);
			memcpy(&v, m.payload + PS - 8, 8);
			assert_int_equal(v, got);
			got++;
		}
		assert_int_equal(r, -EAGAIN);
		if (got == seq)
			break;
		err = conn_flush(&c, snd);
		assert_true(err == 0 || err == -EAGAIN);
		ssize_t n = conn_recv(&c, rcv, &dec, &room);
		assert_true(n > 0 || n == -EAGAIN);
		if (n == -EAGAIN) {
			struct pollfd pf[2] = { { .fd = rcv, .events = POLLIN },
						{ .fd = snd, .events = POLLOUT } };

			if (poll(pf, conn_pending(&c) ? 2 : 1, 5000) <= 0)
				fail_msg("stuck: got %llu of %llu messages, %zu bytes unsent",
					 (unsigned long long)got, (unsigned long long)seq,
					 conn_pending(&c));
		}
	}
	assert_int_equal(conn_pending(&c), 0);
	wire_dec_free(&dec);
	conn_free(&c);
	close(ep);
	close(snd);
	close(rcv);
}

static void test_park_order(void **state)
{
	struct conn c;
	uint8_t page[PS];

	(void)state;
	conn_init(&c, 1024, 4096, 100);
	/* Interleave pushes and pops so the ring wraps while it grows. */
	uint64_t next_in = 0, next_out = 0;
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 7; i++, next_in++) {
			struct wire_msg m = { .type = next_in % 3 ? WIRE_GET_S : WIRE_DATA,
					      .page = next_in };

			if (m.type == WIRE_DATA) {
				fill_page(page, next_in);
				m.len = PS;
				m.payload = page;
			}
			assert_int_equal(conn_park(&c, &m), 0);
			memset(page, 0xee, sizeof(page)); /* the parked copy is its own */
		}
		for (int i = 0; i < 5; i++, next_out++) {
			const struct wire_msg *h = conn_parked_head(&c);
			uint64_t v;

			assert_non_null(h);
			assert_int_equal(h->page, next_out);
			if (h->type == WIRE_DATA) {
				assert_int_equal(h->len, PS);
				memcpy(&v, h->payload + 16, 8);
				assert_int_equal(v, next_out);
			}
			conn_unpark(&c);
		}
	}
	assert_int_equal(c.park_n, next_in - next_out);
	assert_true(conn_park_full(&c));
	conn_free(&c);
	assert_null(conn_parked_head(&c));
}

static void test_bound_exact(void **state)
{
	struct conn c;
	struct wire_msg m = { .type = WIRE_INV };

	(void)state;
	conn_init(&c, 48, 96, 1);
	assert_int_equal(conn_queue(&c, &m, NULL), 0);
	assert_false(conn_congested(&c));
	assert_int_equal(conn_queue(&c, &m, NULL), 0);
	assert_false(conn_congested(&c)); /* 48 is not above a mark of 48 */
	assert_int_equal(conn_queue(&c, &m, NULL), 0);
	assert_true(conn_congested(&c));
	assert_int_equal(conn_queue(&c, &m, NULL), 0); /* exactly at the bound */
	assert_int_equal(conn_queue(&c, &m, NULL), -ENOBUFS);
	assert_int_equal(conn_pending(&c), 96);
	conn_free(&c);
}

/* A send made elsewhere (node.c's batch through os/uring.h) takes part of the queue:
 * conn_sent() moves past it, counts it, and conn_flush() sends exactly the rest, in order;
 * a full socket is counted as one. */
static void test_sent_elsewhere(void **state)
{
	struct conn c;
	struct wire_msg m = { .type = WIRE_INV };
	uint8_t out[3 * WIRE_HDR_LEN], got[3 * WIRE_HDR_LEN];
	int snd, rcv;
	ssize_t w;

	(void)state;
	tcp_pair(&snd, &rcv);
	conn_init(&c, 1 << 20, 1 << 20, 1);
	for (unsigned i = 0; i < 3; i++) {
		m.page = i;
		assert_int_equal(conn_queue(&c, &m, NULL), 0);
	}
	memcpy(out, conn_out(&c), sizeof(out));
	w = send(snd, conn_out(&c), WIRE_HDR_LEN + 5, 0); /* a short send, mid-message */
	assert_int_equal(w, WIRE_HDR_LEN + 5);
	conn_sent(&c, (size_t)w, w);
	assert_int_equal(conn_pending(&c), sizeof(out) - (size_t)w);
	assert_int_equal(c.bytes_out, (uint64_t)w);
	conn_sent(&c, 0, -EAGAIN);
	assert_int_equal(c.full, 1);
	assert_int_equal(c.sends, 2);
	assert_int_equal(conn_flush(&c, snd), 0);
	assert_int_equal(conn_pending(&c), 0);
	assert_int_equal(c.bytes_out, sizeof(out));
	assert_int_equal(recv(rcv, got, sizeof(got), MSG_WAITALL), sizeof(got));
	assert_memory_equal(got, out, sizeof(out));
	/* All of it elsewhere: the queue is empty and reusable. */
	assert_int_equal(conn_queue(&c, &m, NULL), 0);
	conn_sent(&c, WIRE_HDR_LEN, WIRE_HDR_LEN);
	assert_int_equal(conn_pending(&c), 0);
	assert_int_equal(c.out_len, 0);
	conn_free(&c);
	close(snd);
	close(rcv);
}

/* A message as large as a decoder may hold (a read-ahead set of 16 KiB pages: 255 pages,
 * 4,178,040 bytes of WIRE_BUFFER_MAX) is received whatever sizes TCP reads it in: conn_recv
 * never asks the decoder for more room than it may still give. */
static void test_recv_largest(void **state)
{
	const uint32_t ps = 16384, k = (WIRE_BUFFER_MAX - WIRE_HDR_LEN - WIRE_DATA_SET_FIXED) / ps;
	const size_t len = WIRE_DATA_SET_FIXED + (size_t)k * ps, total = WIRE_HDR_LEN + len;
	uint8_t *msg = calloc(1, total);
	struct wire_msg h = { .type = WIRE_DATA_SET, .page = 0, .len = (uint32_t)len }, m;
	struct wire_dec dec;
	struct conn c;
	size_t sent = 0, got = 0;
	int snd, rcv;

	(void)state;
	assert_non_null(msg);
	wire_encode_hdr(msg, &h);
	for (uint32_t i = 0; i < k; i++) /* k pages served, none zero or skipped */
		msg[WIRE_HDR_LEN + i / 8] |= (uint8_t)(1u << (i % 8));
	tcp_pair(&snd, &rcv);
	assert_int_equal(fcntl(snd, F_SETFL, O_NONBLOCK), 0);
	conn_init(&c, 1 << 20, 1 << 22, 64);
	wire_dec_init(&dec, ps);
	while (!got) {
		size_t room = 0;
		ssize_t r;

		if (sent < total) {
			/* Odd pieces, so that reads end anywhere. */
			size_t piece = total - sent < 16381 ? total - sent : 16381;
			ssize_t w = send(snd, msg + sent, piece, MSG_DONTWAIT);

			if (w > 0)
				sent += (size_t)w;
		}
		r = conn_recv(&c, rcv, &dec, &room);
		assert_true(r > 0 || r == -EAGAIN);
		if (wire_dec_next(&dec, &m) == 0) {
			assert_int_equal(m.type, WIRE_DATA_SET);
			assert_int_equal(m.len, len);
			got = 1;
		}
	}
	assert_int_equal(sent, total);
	wire_dec_free(&dec);
	conn_free(&c);
	close(snd);
	close(rcv);
	free(msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bound_exact),
		cmocka_unit_test(test_sent_elsewhere),
		cmocka_unit_test(test_park_order),
		cmocka_unit_test(test_stalled_reader),
		cmocka_unit_test(test_recv_largest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
