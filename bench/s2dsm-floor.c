/* SPDX-License-Identifier: MIT */
/*
 * s2dsm-floor.c - the floor of the s2dsm remote read-all figure (bench/s2dsm-bench.c): the
 * least a program needs for that workload, written as plainly as it can be.
 *
 * Two processes. The writer writes a message into each of N pages of its own memory, then
 * serves page requests over one TCP connection: a blocking recv() of an 8-byte page number,
 * a blocking send() of the page. The reader registers an N-page region with userfaultfd
 * (MISSING mode) and reads every page in order with plain loads, from its main thread; one
 * handler thread per fault does poll() on the userfaultfd, read() of the event, send() of the
 * request, recv() of the page and UFFDIO_COPY, which wakes the main thread. Nobody spins;
 * every page is really faulted and really fetched over TCP (TCP_NODELAY, loopback).
 *
 * It is a floor, not a peer: no coherence beyond this workload (the writer never learns the
 * reader has a copy, nothing can be written afterwards), no failure handling beyond exiting.
 *
 * Driven through stdin/stdout by s2dsm-bench:
 *   s2dsm-floor PAGES MESSAGE
 *   -> "ready WRITER_PID\n"   (both processes are connected and every page is written)
 *   <- any line               (go: the reader reads every page)
 *   -> "done FAULTS MATCHED\n" (faults the handler resolved; pages that held MESSAGE)
 * then both processes exit 0. Any failure: a message on stderr and exit 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1 /* newer than Debian 12's headers; faults of user code only */
#endif

static size_t ps, npages;

static void die(const char *what)
{
	fprintf(stderr, "s2dsm-floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		die("TCP_NODELAY");
}

/* Blocking recv() of exactly @len bytes. Returns 0, or -1 at the end of the connection. */
static int recv_all(int fd, void *buf, size_t len)
{
	while (len) {
		ssize_t n = recv(fd, buf, len, MSG_WAITALL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("recv");
		if (n == 0)
			return -1;
		buf = (char *)buf + n;
		len -= (size_t)n;
	}
	return 0;
}

static void send_all(int fd, const void *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("send");
		buf = (const char *)buf + n;
		len -= (size_t)n;
	}
}

/* The writer: write every page, accept the reader, say so, serve until it hangs up. */
static void writer(int lfd, const char *msg)
{
	size_t len = strlen(msg);
	char *mem = mmap(NULL, npages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	uint64_t page;
	int fd;

	if (mem == MAP_FAILED)
		die("mmap");
	for (size_t p = 0; p < npages; p++) {
		memcpy(mem + p * ps, msg, len);
		mem[p * ps + len] = '\0';
	}
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		die("accept");
	close(lfd);
	nodelay(fd);
	send_all(fd, "R", 1);
	while (!recv_all(fd, &page, sizeof(page))) {
		if (page >= npages) {
			fprintf(stderr, "s2dsm-floor: request for page %llu of %zu\n",
				(unsigned long long)page, npages);
			exit(1);
		}
		send_all(fd, mem + page * ps, ps);
	}
	exit(0);
}

struct reader {
	int uffd, sock;
	char *base;
	uint64_t faults;
};

/* The reader's handler thread: one fault at a time, each fetched from the writer. */
static void *handler(void *arg)
{
	struct reader *r = arg;
	char *page = aligned_alloc(ps, ps);
	struct pollfd pf = { .fd = r->uffd, .events = POLLIN };

	if (!page)
		die("aligned_alloc");
	for (;;) {
		struct uffd_msg m;
		struct uffdio_copy copy;
		uint64_t idx;
		ssize_t n;

		if (poll(&pf, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		n = read(r->uffd, &m, sizeof(m));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n != sizeof(m))
			die("read userfaultfd");
		if (m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		idx = (m.arg.pagefault.address - (uintptr_t)r->base) / ps;
		/* counted before the main thread can run on and read the count */
		__atomic_add_fetch(&r->faults, 1, __ATOMIC_RELAXED);
		send_all(r->sock, &idx, sizeof(idx));
		if (recv_all(r->sock, page, ps)) {
			fprintf(stderr, "s2dsm-floor: the writer went away\n");
			exit(1);
		}
		copy = (struct uffdio_copy){ .dst = (uintptr_t)r->base + idx * ps,
					     .src = (uintptr_t)page, .len = ps };
		if (ioctl(r->uffd, UFFDIO_COPY, &copy)) {
			struct uffdio_range wake = { .start = copy.dst, .len = ps };

			/* Already there (not with one reader thread, but cheap to get right). */
			if (errno != EEXIST || ioctl(r->uffd, UFFDIO_WAKE, &wake))
				die("UFFDIO_COPY");
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t slen = sizeof(sa);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	struct reader r = { 0 };
	const char *msg;
	pthread_t thr;
	char line[64], ready, *buf;
	size_t matched = 0;
	long v;
	pid_t pid;
	int lfd, status;

	if (argc != 3 || (v = strtol(argv[1], NULL, 10)) <= 0) {
		fprintf(stderr, "usage: s2dsm-floor PAGES MESSAGE\n");
		return 2;
	}
	npages = (size_t)v;
	msg = argv[2];
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (strlen(msg) >= ps) {
		fprintf(stderr, "s2dsm-floor: the message must be shorter than a page\n");
		return 2;
	}

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &slen))
		die("listen");
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0)
		writer(lfd, msg);
	close(lfd);

	r.sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r.sock < 0 || connect(r.sock, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect");
	nodelay(r.sock);
	r.base = mmap(NULL, npages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	buf = malloc(ps + 1);
	if (r.base == MAP_FAILED || !buf)
		die("mmap");
	r.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (r.uffd < 0 || ioctl(r.uffd, UFFDIO_API, &api))
		die("userfaultfd");
	reg = (struct uffdio_register){ .range = { .start = (uintptr_t)r.base,
						   .len = npages * ps },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(r.uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER");
	if (pthread_create(&thr, NULL, handler, &r))
		die("pthread_create");
	if (recv_all(r.sock, &ready, 1)) {
		fprintf(stderr, "s2dsm-floor: the writer went away\n");
		return 1;
	}

	printf("ready %d\n", (int)pid);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (size_t p = 0; p < npages; p++) {
		memcpy(buf, r.base + p * ps, ps);
		buf[ps] = '\0';
		matched += !strcmp(buf, msg);
	}
	printf("done %llu %zu\n", (unsigned long long)__atomic_load_n(&r.faults, __ATOMIC_RELAXED),
	       matched);
	fflush(stdout);
	free(buf);

	shutdown(r.sock, SHUT_RDWR); /* the writer sees the end and exits */
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		return 1;
	return 0;
}
