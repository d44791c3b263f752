/* SPDX-License-Identifier: MIT */
/*
 * test_net.c - net_connect() (src/os/net.c), the bounded connect a joining node makes, on
 * loopback:
 *  - a connect that cannot complete (the listener's accept queue is full, so the kernel drops
 *    the SYN) ends at its deadline with -ETIMEDOUT, also while a signal without SA_RESTART
 *    (an application's interval timer) interrupts its wait every 2 ms: never -EINTR, never
 *    sooner, never much later;
 *  - with @retry, a refused connect is tried again until the deadline, then gives
 *    -ECONNREFUSED; without it, the first refusal is the answer;
 *  - with @retry, a listener that appears before the deadline is reached.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "os/net.h"

static volatile sig_atomic_t ticks;

static void on_alarm(int sig)
{
	(void)sig;
	ticks++;
}

/* A socket bound to 127.0.0.1, any port (its address in @sa); listening with @backlog if it
 * is not negative, else never: connects to it are refused. */
static int bound_socket(struct sockaddr_in *sa, int backlog)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	socklen_t len = sizeof(*sa);

	assert_true(fd >= 0);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	if (backlog >= 0)
		assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)sa, &len), 0);
	return fd;
}

static void test_connect_timeout_under_signals(void **state)
{
	struct sockaddr_in sa;
	struct sigaction act = { .sa_handler = on_alarm }, old;
	struct itimerval it = { .it_interval = { 0, 2000 }, .it_value = { 0, 2000 } };
	struct itimerval off = { 0 };
	int lfd = bound_socket(&sa, 0), filler[2], fd; /* the smallest backlog */
	int64_t t0, took;

	(void)state;
	/* Fill the accept queue (nobody accepts): the listener then drops further SYNs. */
	for (int i = 0; i < 2; i++) {
		filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		assert_true(filler[i] >= 0);
		connect(filler[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	usleep(20000); /* both handshakes done, as far as the kernel lets them */

	sigemptyset(&act.sa_mask);
	act.sa_flags = 0; /* no SA_RESTART: the wait must see EINTR and go on */
	assert_int_equal(sigaction(SIGALRM, &act, &old), 0);
	ticks = 0;
	assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
	t0 = net_now_ms();
	fd = net_connect(&sa, net_deadline(300), 1);
	took = net_now_ms() - t0;
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);

	assert_int_equal(fd, -ETIMEDOUT);
	assert_true(took >= 290);
	assert_true(took < 1500); /* the deadline, not the SYN's 1 s retransmission and more */
	assert_true(ticks > 10);  /* the wait was interrupted, many times */
	for (int i = 0; i < 2; i++)
		close(filler[i]);
	close(lfd);
}

static void test_connect_refused(void **state)
{
	struct sockaddr_in sa;
	int pfd = bound_socket(&sa, -1);
	int64_t t0, took;

	(void)state;
	t0 = net_now_ms();
	assert_int_equal(net_connect(&sa, net_deadline(5000), 0), -ECONNREFUSED);
	assert_true(net_now_ms() - t0 < 1000); /* no retry: the first refusal */

	t0 = net_now_ms();
	assert_int_equal(net_connect(&sa, net_deadline(250), 1), -ECONNREFUSED);
	took = net_now_ms() - t0;
	assert_true(took >= 100); /* tried again until (close to) the deadline */
	assert_true(took < 1500);
	close(pfd);
}

struct late {
	int fd;
	struct sockaddr_in sa;
};

static void *listen_late(void *arg)
{
	struct late *l = arg;

	usleep(100000);
	assert_int_equal(listen(l->fd, 16), 0);
	return NULL;
}

static void test_connect_listener_appears(void **state)
{
	struct late l;
	pthread_t th;
	int fd, a;

	(void)state;
	l.fd = bound_socket(&l.sa, -1);
	assert_int_equal(pthread_create(&th, NULL, listen_late, &l), 0);
	fd = net_connect(&l.sa, net_deadline(5000), 1);
	pthread_join(th, NULL);
	assert_true(fd >= 0);
	a = accept(l.fd, NULL, NULL);
	assert_true(a >= 0);
	close(a);
	close(fd);
	close(l.fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_timeout_under_signals),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_connect_listener_appears),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
