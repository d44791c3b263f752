/* SPDX-License-Identifier: MIT */
/*
 * net.c - TCP helpers (see net.h).
 */
#define LOG_PREFIX "net: "
#include "os/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "os/log.h"

uint64_t net_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t net_boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t net_now_ms(void)
{
	return (int64_t)(net_now_ns() / 1000000u);
}

int64_t net_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? INT64_MAX : net_now_ms() + timeout_ms;
}

/* Milliseconds left before @deadline, for poll(): -1 means forever. */
static int left_ms(int64_t deadline)
{
	int64_t left;

	if (deadline == INT64_MAX)
		return -1;
	left = deadline - net_now_ms();
	if (left <= 0)
		return 0;
	return left > 1000000 ? 1000000 : (int)left;
}

int net_parse(const char *hostport, struct sockaddr_in *sa)
{
	char host[256];
	const char *colon;
	char *end;
	long port;
	size_t hlen;

	if (!hostport || !(colon = strrchr(hostport, ':')))
		return -EINVAL;
	hlen = (size_t)(colon - hostport);
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, hostport, hlen);
	host[hlen] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port < 0 || port > 65535)
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (!hlen || !strcmp(host, "*")) {
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	if (inet_pton(AF_INET, host, &sa->sin_addr) == 1)
		return 0;

	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
	if (getaddrinfo(host, NULL, &hints, &res) || !res)
		return -EHOSTUNREACH;
	sa->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
	freeaddrinfo(res);
	return 0;
}

void net_format(const struct sockaddr_in *sa, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
	snprintf(buf, len, "%s:%u", ip, ntohs(sa->sin_port));
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int net_listen(const struct sockaddr_in *sa)
{
	int one = 1, fd, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) || listen(fd, 128)) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int net_local(int fd, struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);

	return getsockname(fd, (struct sockaddr *)sa, &len) ? -errno : 0;
}

int net_tune(int fd)
{
	int one = 1, idle = 5, intvl = 1, cnt = 5;
	unsigned user_timeout = 10000;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* A peer host that vanishes without a FIN or RST is noticed within ~10 s. */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
	return set_nonblock(fd);
}

int net_connect(const struct sockaddr_in *sa, int64_t deadline, int retry)
{
	int delay_ms = 10;

	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err = 0;
		socklen_t elen = sizeof(err);

		if (fd < 0)
			return -errno;
		if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
			goto ok;
		if (errno != EINPROGRESS) {
			err = errno;
		} else {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int n;

			do /* a signal (a timer of the application's) is no reason to fail */
				n = poll(&p, 1, left_ms(deadline));
			while (n < 0 && errno == EINTR);

			if (n == 0)
				err = ETIMEDOUT;
			else if (n < 0)
				err = errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen))
				err = errno;
		}
		if (!err)
			goto ok;
		close(fd);
		if (!retry || (err != ECONNREFUSED && err != ECONNRESET) ||
		    net_now_ms() + delay_ms >= deadline)
			return -err;
		poll(NULL, 0, delay_ms);
		if (delay_ms < 200)
			delay_ms *= 2;
		continue;
ok:
		err = net_tune(fd);
		if (err) {
			close(fd);
			return err;
		}
		return fd;
	}
}

int net_accept(int lfd, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), n, err;

		if (fd >= 0) {
			err = net_tune(fd);
			if (err) {
				close(fd);
				return err;
			}
			return fd;
		}
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			return -errno;
		n = poll(&p, 1, left_ms(deadline));
		if (n == 0)
			return -ETIMEDOUT;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n = poll(&p, 1, left_ms(deadline));

	if (n == 0)
		return -ETIMEDOUT;
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	return 0;
}

int net_send_msg(int fd, const struct wire_msg *m, int64_t deadline)
{
	uint8_t buf[WIRE_HDR_LEN + WIRE_PEERS_MAX];
	size_t len, off = 0;

	if (m->len > WIRE_PEERS_MAX)
		return -EMSGSIZE;
	len = wire_encode(buf, sizeof(buf), m);
	while (off < len) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
		int err;

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		err = wait_fd(fd, POLLOUT, deadline);
		if (err)
			return err;
	}
	return 0;
}

int net_recv_msg(int fd, struct wire_dec *dec, struct wire_msg *m, int64_t deadline)
{
	for (;;) {
		uint8_t buf[4096];
		ssize_t n;
		int err = wire_dec_next(dec, m);

		if (err != -EAGAIN)
			return err;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0)
			return -ECONNRESET;
		if (n > 0) {
			err = wire_dec_feed(dec, buf, (size_t)n);
			if (err)
				return err;
			continue;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		err = wait_fd(fd, POLLIN, deadline);
		if (err)
			return err;
	}
}
