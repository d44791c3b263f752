/* SPDX-License-Identifier: MIT */
/*
 * test_uring.c - uring_send() (src/os/uring.c), several sends in one system call, on Unix
 * stream socket pairs:
 *  - every buffer arrives whole and in order, on its own socket, call after call (the ring's
 *    indices wrap many times);
 *  - a socket with no room answers -EAGAIN at once (the call returns; the refused byte is
 *    not queued in the kernel either), a buffer larger than the socket takes is sent in part
 *    and says how much, and the sends beside them are unaffected;
 *  - a socket whose peer is closed answers -EPIPE;
 *  - more sends than the ring holds, or a closed ring, are refused with -EINVAL, every
 *    result says "not sent" (-ECANCELED), and the ring still works after the first.
 * Where the kernel refuses io_uring (kernel.io_uring_disabled, a seccomp filter), the tests
 * are skipped: the library then sends one by one (src/node.c flush_all()).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "os/uring.h"

#define PAIRS 5
#define RING 8

static int open_ring(struct uring *u)
{
	int err = uring_open(u, RING);

	if (err == -ENOSYS || err == -EPERM || err == -EACCES || err == -EINVAL)
		return 1; /* not here (or no IORING_SETUP_SUBMIT_ALL, before 5.18): skip */
	assert_int_equal(err, 0);
	return 0;
}

static void pairs(int fd[PAIRS][2])
{
	for (int i = 0; i < PAIRS; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd[i]), 0);
		assert_int_equal(fcntl(fd[i][0], F_SETFL, O_NONBLOCK), 0);
		assert_int_equal(fcntl(fd[i][1], F_SETFL, O_NONBLOCK), 0);
	}
}

static void close_pairs(int fd[PAIRS][2])
{
	for (int i = 0; i < PAIRS; i++) {
		if (fd[i][0] >= 0)
			close(fd[i][0]);
		if (fd[i][1] >= 0)
			close(fd[i][1]);
	}
}

static void test_order(void **state)
{
	struct uring u;
	int fd[PAIRS][2];

	(void)state;
	if (open_ring(&u))
		skip();
	pairs(fd);
	for (unsigned round = 0; round < 1000; round++) {
		struct uring_send v[PAIRS];
		uint32_t msg[PAIRS][4];

		for (unsigned i = 0; i < PAIRS; i++) {
			for (unsigned w = 0; w < 4; w++)
				msg[i][w] = round * 1000 + i * 10 + w;
			v[i] = (struct uring_send){ .fd = fd[i][0], .buf = msg[i],
						    .len = sizeof(msg[i]) };
		}
		assert_int_equal(uring_send(&u, v, PAIRS), 0);
		for (unsigned i = 0; i < PAIRS; i++) {
			uint32_t got[4];

			assert_int_equal(v[i].res, sizeof(msg[i]));
			assert_int_equal(read(fd[i][1], got, sizeof(got)), sizeof(got));
			assert_memory_equal(got, msg[i], sizeof(got));
		}
	}
	close_pairs(fd);
	uring_close(&u);
	uring_close(&u); /* idempotent */
	assert_int_equal(u.fd, -1);
}

static void test_full_and_closed(void **state)
{
	static uint8_t big[1 << 20];
	struct uring u;
	int fd[PAIRS][2];
	struct uring_send v[3];
	ssize_t w;
	size_t queued = 0;

	(void)state;
	if (open_ring(&u))
		skip();
	pairs(fd);
	/* Pair 0 full: write until the socket refuses. */
	while ((w = write(fd[0][0], big, sizeof(big))) > 0)
		queued += (size_t)w;
	assert_true(w < 0 && errno == EAGAIN);
	/* Pair 2: its peer is gone. */
	close(fd[2][1]);
	fd[2][1] = -1;
	memset(big, 0x5a, sizeof(big));
	v[0] = (struct uring_send){ .fd = fd[0][0], .buf = "x", .len = 1 };
	v[1] = (struct uring_send){ .fd = fd[1][0], .buf = big, .len = sizeof(big) };
	v[2] = (struct uring_send){ .fd = fd[2][0], .buf = "y", .len = 1 };
	assert_int_equal(uring_send(&u, v, 3), 0);
	assert_int_equal(v[0].res, -EAGAIN);
	/* Pair 1 takes what fits of a buffer larger than a socket holds, and says how much. */
	assert_true(v[1].res > 0 && (size_t)v[1].res < sizeof(big));
	assert_int_equal(v[2].res, -EPIPE);
	/* What pair 1 took is what was sent. */
	size_t got = 0;
	uint8_t buf[4096];

	while ((w = read(fd[1][1], buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < w; i++)
			assert_int_equal(buf[i], 0x5a);
		got += (size_t)w;
	}
	assert_int_equal(got, (size_t)v[1].res);
	/* Pair 0 still holds exactly what was queued before: the refused byte is not there. */
	size_t drained = 0;

	while ((w = read(fd[0][1], big, sizeof(big))) > 0)
		drained += (size_t)w;
	assert_int_equal(drained, queued);
	close_pairs(fd);
	uring_close(&u);
}

static void test_too_many(void **state)
{
	struct uring u;
	int fd[PAIRS][2];
	struct uring_send v[RING + 1];

	(void)state;
	if (open_ring(&u))
		skip();
	pairs(fd);
	for (unsigned i = 0; i < RING + 1; i++)
		v[i] = (struct uring_send){ .fd = fd[0][0], .buf = "z", .len = 1 };
	assert_int_equal(uring_send(&u, v, RING + 1), -EINVAL);
	for (unsigned i = 0; i < RING + 1; i++)
		assert_int_equal(v[i].res, -ECANCELED);
	char c;

	assert_int_equal(read(fd[0][1], &c, 1), -1); /* nothing was sent */
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(uring_send(&u, v, 2), 0); /* and the ring still works */
	assert_int_equal(v[0].res, 1);
	assert_int_equal(v[1].res, 1);
	/* Closed: refused, not a crash. */
	uring_close(&u);
	assert_int_equal(uring_send(&u, v, 2), -EINVAL);
	assert_int_equal(v[0].res, -ECANCELED);
	assert_int_equal(v[1].res, -ECANCELED);
	close_pairs(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_full_and_closed),
		cmocka_unit_test(test_too_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
