/* SPDX-License-Identifier: MIT */
/*
 * s2dsm.c - the interactive program of the classic two-terminal DSM assignment, on libudsm.
 *
 *   terminal 1: s2dsm 5000 6000        terminal 2: s2dsm 6000 5000
 *
 * The process that starts first asks how many pages to allocate and creates the region; the
 * other one (or others, with --nodes) joins and maps it at the same address. Then every
 * process reads and writes pages at a prompt, and says " [x] PAGEFAULT" whenever an access
 * had to fetch the page from another process. See docs/s2dsm.md.
 *
 * Structure: parse the command line (parse_args() into struct opts), find out whether this
 * process is the first one and set up its listening socket (setup()), form the cluster
 * (open_cluster()), then run the prompt loop (run()). Page accesses go through access_page(),
 * which watches the node's fault counter around a real load or store, and touch_page(),
 * which turns the SIGBUS of a page that died with another node into a return value. A read
 * or write of every page (-1) goes through all_pages(): worker threads make the accesses,
 * several at once, so that several pages are on their way at a time, and the main thread
 * prints the results in page order, exactly as one access after the other would.
 * Library log lines reach the terminal through log_to_console().
 *
 * Output goes through a buffer of our own (out_buf), flushed whenever the program is about to
 * wait for input (ask()), before a library notice, and at least every FLUSH_NS during a long
 * command: a read of every page then costs a write() per 64 KiB of output, not per line, in a
 * pipe, under `stdbuf -o0` and on a terminal alike.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* getline(), getaddrinfo(), sigsetjmp() when built on its own */
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "udsm.h"

#define DEFAULT_NODES 2
/* Bound on the connection attempt that tells whether the first process is there. */
#define PROBE_MS 5000
/* How long that connection is kept open while the library connects (see watch_first()). */
#define WATCH_MS 500
/* After that connection is closed by the first process, how long udsm_open() may take to
 * finish before we conclude the process went away (it also closes the connection, as one
 * that never authenticated, once every node has joined). */
#define WATCH_GRACE_MS 5000
/* The library refuses regions larger than this (src/api.c). */
#define LIB_MAX_SIZE ((uint64_t)64 << 30)
/* Bad input is quoted back to the user, cut to this many bytes. */
#define QUOTE_MAX 40
/* During a command over many pages, output waits in out_buf at most this long, so a person
 * watching sees it progress. */
#define FLUSH_NS 50000000
/* all_pages(): accesses in flight at once, and how far ahead of the printing they may run
 * (pages whose copy waits to be printed). */
#define AP_THREADS 8
#define AP_WINDOW 256
/* ... and how many ready pages wake the printing thread (see struct all_pages). */
#define AP_BATCH 32

#define EXIT_USAGE 2

static const char cmd_prompt[] = "> Which command should I run? (r:read, w:write): ";
static const char msg_prompt[] = "> Type your new message: ";
static const char commands_line[] = " [*] Commands: r (read), w (write), v (view MSI state), "
				    "q (quit); page -1 selects every page\n";

/*
 * What the SIGBUS handler needs to return to touch_page(), per thread: the main thread and
 * the workers of all_pages() touch the region.
 */
static __thread sigjmp_buf bus_env;
static __thread volatile sig_atomic_t bus_armed;
static __thread sigset_t bus_mask; /* the thread's signal mask, restored after a jump */

/*
 * stdout's buffer. Ours, with its size given, because setvbuf() with a NULL buffer keeps
 * whatever buffer the stream has: under `stdbuf -o0` (how programs are usually driven
 * through a pipe) that is a single byte, and every line went out in pieces.
 */
static char out_buf[1 << 16];

struct opts {
	const char *listen;   /* --listen HOST:PORT, or NULL */
	const char *join;     /* --join HOST:PORT, or NULL */
	unsigned nodes;       /* --nodes, 0 if not given */
	int timeout_ms;       /* for udsm_config.timeout_ms: -1 = no bound */
	int spin_us;          /* for udsm_config.spin_us: 0 = the library's default */
	bool serial;          /* --serial: -1 accesses one page after the other */
	int local_port;       /* positional ports, 0 if not given */
	int remote_port;
	int probe_fd;         /* joiner: our own connection to the first process, or -1 */
	char listen_buf[32];  /* "127.0.0.1:<local>" in positional mode */
	char join_buf[32];    /* "127.0.0.1:<remote>" in positional mode */
};

/*
 * The terminal, shared by the main thread and the library's log callback (which runs on the
 * service thread). A log line that arrives while the user looks at a prompt is printed on a
 * line of its own and the prompt is shown again.
 */
struct console {
	pthread_mutex_t mu;
	const char *prompt; /* the prompt waiting for input, or NULL; under mu */
	bool opened;        /* udsm_open() returned: library notices are news now; under mu */
	bool verbose;       /* UDSM_LOG_LEVEL is set: show whatever the library logs */
};

struct session {
	struct console *con;
	struct udsm *dsm;
	char *base;
	size_t ps, npages;
	char *buf;          /* ps + 1 bytes: a copy of one page, NUL-terminated */
	char *line;         /* getline() buffer */
	size_t cap;
	char page_prompt[96];
	uint64_t flushed_ns; /* when stdout was last flushed during a command */
	bool serial;         /* no all_pages(): every access by the main thread */
};

/* ------------------------------------------------------------------------------------------
 * Terminal.
 */

static void log_to_console(void *arg, int level, const char *msg)
{
	struct console *con = arg;
	const char *tag = level <= UDSM_LOG_WARN ? "!" : level <= UDSM_LOG_INFO ? "i" : "d";

	pthread_mutex_lock(&con->mu);
	/* Before the cluster is up, our own lines say what the library's notices would. */
	if (level <= UDSM_LOG_WARN || con->opened || con->verbose) {
		fflush(stdout);
		fprintf(stderr, "%s [%s] %s\n", con->prompt ? "\n" : "", tag, msg);
		if (con->prompt) {
			fputs(con->prompt, stdout);
			fflush(stdout);
		}
	}
	pthread_mutex_unlock(&con->mu);
}

/*
 * Show @prompt and read one line into *@line, without its line end. Returns its length, or
 * -1 at the end of input (or a read error, which a person can do nothing about either).
 */
static ssize_t ask(struct console *con, const char *prompt, char **line, size_t *cap)
{
	ssize_t n;

	pthread_mutex_lock(&con->mu);
	fputs(prompt, stdout);
	fflush(stdout);
	con->prompt = prompt;
	pthread_mutex_unlock(&con->mu);

	n = getline(line, cap, stdin);

	pthread_mutex_lock(&con->mu);
	con->prompt = NULL;
	pthread_mutex_unlock(&con->mu);
	if (n < 0) {
		putchar('\n'); /* leave the terminal on a fresh line */
		return -1;
	}
	if (n > 0 && (*line)[n - 1] == '\n')
		(*line)[--n] = '\0';
	if (n > 0 && (*line)[n - 1] == '\r')
		(*line)[--n] = '\0';
	return n;
}

/* Strip leading and trailing white space in place. */
static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* For quoting user input back: the first QUOTE_MAX bytes, and whether there was more. */
#define QUOTE_FMT "'%.*s%s'"
#define QUOTE_ARG(s) QUOTE_MAX, (s), strlen(s) > QUOTE_MAX ? "..." : ""

/*
 * Parse a whole decimal integer. Returns 0, -ERANGE (with *@v clamped to the side it fell
 * off), or -EINVAL if @s is not a number.
 */
static int parse_ll(const char *s, long long *v)
{
	char *end;

	if (!*s)
		return -EINVAL;
	errno = 0;
	*v = strtoll(s, &end, 10);
	if (end == s || *end)
		return -EINVAL;
	return errno == ERANGE ? -ERANGE : 0;
}

/* ------------------------------------------------------------------------------------------
 * Command line.
 */

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s LOCAL_PORT REMOTE_PORT [--nodes N] [--timeout MS]\n"
		"       %s [--listen HOST:PORT] [--nodes N] [--timeout MS]      (first process)\n"
		"       %s --join HOST:PORT [--listen HOST:PORT] [--timeout MS] (other processes)\n"
		"\n"
		"Distributed shared memory between processes, one page at a time.\n"
		"\n"
		"On one host, run '%s 5000 6000' in one terminal and '%s 6000 5000' in another.\n"
		"Whichever starts first is the first process: it listens on 127.0.0.1:LOCAL_PORT,\n"
		"asks how many pages to allocate and creates the region. The other connects to\n"
		"127.0.0.1:REMOTE_PORT, learns the size and maps the region at the same address.\n"
		"\n"
		"Options:\n"
		"  --listen HOST:PORT  accept peers there (first process: default 127.0.0.1:0, i.e.\n"
		"                      any free port, which is printed; use 0.0.0.0:PORT for peers\n"
		"                      on other hosts)\n"
		"  --join HOST:PORT    join the cluster whose first process listens on HOST:PORT\n"
		"  --nodes N           first process: number of processes in the cluster, itself\n"
		"                      included, 2 to %d (default %d)\n"
		"  --timeout MS        give up if the cluster has not formed within MS milliseconds\n"
		"                      (default: wait as long as it takes; 0 or less: the same)\n"
		"  --spin US           how long the library's service thread busy-polls before it\n"
		"                      sleeps, in microseconds; negative: never (default: the\n"
		"                      library's choice; for measurements, see s2dsm-bench)\n"
		"  --serial            with page -1, access one page after the other (default:\n"
		"                      several at once, printed in page order all the same)\n"
		"  -h, --help          show this help\n"
		"\n"
		"Commands at the '> Which command should I run?' prompt:\n"
		"  r  read a page (or -1: every page) and print it\n"
		"  w  write a message into a page (or -1: every page)\n"
		"  v  view the MSI state of a page here: MODIFIED, SHARED or INVALID\n"
		"  q  quit (so does end of input, Ctrl-D)\n"
		"An access that has to fetch the page from another process prints ' [x] PAGEFAULT'.\n",
		prog, prog, prog, prog, prog, UDSM_MAX_NODES, DEFAULT_NODES);
}

static int parse_port(const char *s, int *port)
{
	long long v;

	if (parse_ll(s, &v) || v < 1 || v > 65535)
		return -EINVAL;
	*port = (int)v;
	return 0;
}

/* Returns 0, or an exit status after printing why. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "join", required_argument, NULL, 'j' },
		{ "nodes", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "spin", required_argument, NULL, 's' },
		{ "serial", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *prog = argv[0];
	long long v;
	int c;

	memset(o, 0, sizeof(*o));
	o->timeout_ms = -1;
	o->probe_fd = -1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->listen = optarg;
			break;
		case 'j':
			o->join = optarg;
			break;
		case 'n':
			if (parse_ll(optarg, &v) || v < 2 || v > UDSM_MAX_NODES) {
				fprintf(stderr, "%s: --nodes wants a number from 2 to %d, not '%s'\n",
					prog, UDSM_MAX_NODES, optarg);
				return EXIT_USAGE;
			}
			o->nodes = (unsigned)v;
			break;
		case 't':
			if (parse_ll(optarg, &v) == -EINVAL) {
				fprintf(stderr, "%s: --timeout wants a number of milliseconds, not '%s'\n",
					prog, optarg);
				return EXIT_USAGE;
			}
			o->timeout_ms = v <= 0 ? -1 : v > INT_MAX ? INT_MAX : (int)v;
			break;
		case 's':
			if (parse_ll(optarg, &v) || v == 0 || v < INT_MIN || v > INT_MAX) {
				fprintf(stderr, "%s: --spin wants a number of microseconds other "
					"than 0 (negative: never spin), not '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			o->spin_us = (int)v;
			break;
		case 'S':
			o->serial = true;
			break;
		case 'h':
			usage(stdout, prog);
			exit(0);
		default:
			fprintf(stderr, "Try '%s --help'.\n", prog);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 0 && argc != 2) {
		fprintf(stderr, "%s: give two ports (LOCAL_PORT REMOTE_PORT) or none\n"
			"Try '%s --help'.\n", prog, prog);
		return EXIT_USAGE;
	}
	if (argc == 2) {
		if (parse_port(argv[0], &o->local_port) || parse_port(argv[1], &o->remote_port)) {
			fprintf(stderr, "%s: '%s' is not a port number (1-65535)\n", prog,
				o->local_port ? argv[1] : argv[0]);
			return EXIT_USAGE;
		}
		if (o->local_port == o->remote_port) {
			fprintf(stderr, "%s: the local and the remote port must differ\n", prog);
			return EXIT_USAGE;
		}
		if (o->listen || o->join) {
			fprintf(stderr, "%s: give either LOCAL_PORT REMOTE_PORT or --listen/--join, "
				"not both\n", prog);
			return EXIT_USAGE;
		}
	}
	if (o->join && o->nodes) {
		fprintf(stderr, "%s: --nodes is for the first process; a joining process learns "
			"the cluster size from it\n", prog);
		return EXIT_USAGE;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Network set-up: who is first, and the listening socket.
 */

/* "host:port" to an IPv4 address; an empty host or "*" is any address. Returns 0 or -errno. */
static int parse_hostport(const char *hp, struct sockaddr_in *sa)
{
	const char *colon = strrchr(hp, ':');
	char host[256];
	long long port;
	size_t hlen;

	if (!colon || parse_ll(colon + 1, &port) || port < 0 || port > 65535)
		return -EINVAL;
	hlen = (size_t)(colon - hp);
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, hp, hlen);
	host[hlen] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (!hlen || !strcmp(host, "*")) {
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
	} else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
		struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
		struct addrinfo *res;

		if (getaddrinfo(host, NULL, &hints, &res) || !res)
			return -EHOSTUNREACH;
		memcpy(sa, res->ai_addr, sizeof(*sa));
		sa->sin_port = htons((uint16_t)port);
		freeaddrinfo(res);
	}
	return 0;
}

static void format_addr(const struct sockaddr_in *sa, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
	snprintf(buf, len, "%s:%u", ip, ntohs(sa->sin_port));
}

/*
 * Bind and listen on @hp, and say where in @bound. Non-blocking: the library polls it with
 * its own deadline. Returns the socket or -errno.
 */
static int open_listener(const char *hp, char *bound, size_t blen)
{
	struct sockaddr_in sa;
	socklen_t slen = sizeof(sa);
	int one = 1, fd, err;

	if ((err = parse_hostport(hp, &sa)))
		return err;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&sa, &slen)) {
		err = -errno;
		close(fd);
		return err;
	}
	format_addr(&sa, bound, blen);
	return fd;
}

/* Open a TCP connection to @hp within @ms. Returns the socket or -errno. */
static int probe(const char *hp, int ms)
{
	struct sockaddr_in sa;
	struct pollfd pf;
	socklen_t elen = sizeof(int);
	int fd, err;

	if ((err = parse_hostport(hp, &sa)))
		return err;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	err = 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = errno;
		if (err == EINPROGRESS) {
			pf = (struct pollfd){ .fd = fd, .events = POLLOUT };
			err = 0;
			if (poll(&pf, 1, ms) <= 0)
				err = ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen))
				err = errno;
		}
	}
	if (err) {
		close(fd);
		return -err;
	}
	return fd;
}

static const char *addr_strerror(int err)
{
	if (err == -EINVAL)
		return "not a HOST:PORT address";
	if (err == -EHOSTUNREACH)
		return "unknown host";
	return udsm_strerror(err);
}

/*
 * Work out whether this process is the first one, and set up its listening socket.
 * Fills @cfg's join and listen_fd; returns 0 or an exit status after saying why.
 */
static int setup(struct opts *o, struct udsm_config *cfg, char *bound, size_t blen)
{
	int ms = o->timeout_ms > 0 && o->timeout_ms < PROBE_MS ? o->timeout_ms : PROBE_MS;
	int err;

	if (o->local_port) {
		snprintf(o->listen_buf, sizeof(o->listen_buf), "127.0.0.1:%d", o->local_port);
		snprintf(o->join_buf, sizeof(o->join_buf), "127.0.0.1:%d", o->remote_port);
		o->listen = o->listen_buf;
		err = probe(o->join_buf, ms);
		if (err >= 0) {
			o->probe_fd = err;
			o->join = o->join_buf;
			if (o->nodes) {
				printf(" [*] A process already listens on port %d: joining it "
				       "(--nodes is ignored)\n", o->remote_port);
				o->nodes = 0;
			}
		} else if (err != -ECONNREFUSED) {
			fflush(stdout); /* what we said first comes first */
			fprintf(stderr, "s2dsm: cannot tell whether port %d is in use: %s\n",
				o->remote_port, addr_strerror(err));
			return 1;
		}
	} else if (o->join) {
		err = probe(o->join, ms);
		if (err < 0) {
			fprintf(stderr, "s2dsm: cannot reach the first process at %s: %s\n", o->join,
				addr_strerror(err));
			return 1;
		}
		o->probe_fd = err;
	}

	cfg->join = o->join;
	cfg->nodes = o->nodes ? o->nodes : DEFAULT_NODES;
	if (o->join && !o->listen)
		return 0; /* the library listens where the first process can see us */
	if (!o->listen)
		o->listen = "127.0.0.1:0";
	cfg->listen_fd = open_listener(o->listen, bound, blen);
	if (cfg->listen_fd < 0) {
		fflush(stdout);
		err = cfg->listen_fd;
		cfg->listen_fd = 0;
		if (err == -EADDRINUSE)
			fprintf(stderr, "s2dsm: cannot listen on %s: the port is in use (by another "
				"s2dsm?)\n", o->listen);
		else
			fprintf(stderr, "s2dsm: cannot listen on %s: %s\n", o->listen,
				addr_strerror(err));
		return 1;
	}
	return 0;
}

struct watch {
	int fd;           /* our probe connection to the first process */
	int done[2];      /* a pipe: written once udsm_open() has returned */
	const char *join; /* its address */
	pthread_t thread;
};

/*
 * The library retries a refused connection until its timeout, which we leave unbounded: if
 * the first process went away between our probe and the library's own connect, udsm_open()
 * would wait for ever. But our probe connection is still in that process's accept queue, and
 * is reset when the process or its listening socket goes away: watch it while the library
 * connects. Then close it; the first process drops it as a connection without a handshake.
 */
static void *watch_first(void *arg)
{
	struct watch *w = arg;
	struct pollfd pf[2] = { { .fd = w->fd, .events = POLLIN | POLLRDHUP },
				{ .fd = w->done[0], .events = POLLIN } };

	/* The first process also closes our probe when the cluster is complete (to it, the probe
	 * is a connection that never authenticated): a hang-up means it went away only if
	 * udsm_open() does not finish soon after. */
	if (poll(pf, 2, WATCH_MS) > 0 && !pf[1].revents && poll(&pf[1], 1, WATCH_GRACE_MS) == 0) {
		fprintf(stderr, "s2dsm: could not join the cluster at %s: the first process went "
			"away\n", w->join);
		_exit(1);
	}
	close(w->fd);
	return NULL;
}

/* ------------------------------------------------------------------------------------------
 * The region.
 */

/* The largest region this machine can hold: physical memory, the library's limit, size_t. */
static uint64_t max_pages(size_t ps)
{
	long phys = sysconf(_SC_PHYS_PAGES);
	uint64_t max = LIB_MAX_SIZE / ps;

	if (phys > 0 && (uint64_t)phys < max)
		max = (uint64_t)phys;
	if (SIZE_MAX / ps < max)
		max = SIZE_MAX / ps;
	return max;
}

/* The first process's question. Returns the page count, or 0 at the end of input. */
static size_t ask_pages(struct console *con, size_t ps, char **line, size_t *cap)
{
	static const char prompt[] =
		"> How many pages would you like to allocate (greater than 0)? ";
	uint64_t max = max_pages(ps);

	for (;;) {
		long long v;
		char *s;
		int err;

		if (ask(con, prompt, line, cap) < 0)
			return 0;
		s = trim(*line);
		err = parse_ll(s, &v);
		if (!*s)
			printf(" [!] Please type a number of pages greater than 0.\n");
		else if (err == -EINVAL)
			printf(" [!] " QUOTE_FMT " is not a number: please type a number of pages "
			       "greater than 0.\n", QUOTE_ARG(s));
		else if (v <= 0)
			printf(" [!] The number of pages must be greater than 0, not " QUOTE_FMT ".\n",
			       QUOTE_ARG(s));
		else if (err == -ERANGE || (unsigned long long)v > max)
			printf(" [!] " QUOTE_FMT " pages do not fit: at most %llu pages of %zu "
			       "bytes (memory and library limit).\n", QUOTE_ARG(s),
			       (unsigned long long)max, ps);
		else
			return (size_t)v;
	}
}

/*
 * Form or join the cluster. Returns 0 with s->dsm open, -1 if the user ended the input at
 * the page count question, or an exit status (> 0) after saying why it failed.
 */
static int open_cluster(struct opts *o, struct session *s)
{
	/* Textbook MSI, as the assignment shows it: no read-ahead (one fault line per page),
	 * no migratory hand-over (a read always ends Shared). */
	struct udsm_config cfg = { .timeout_ms = o->timeout_ms, .readahead = -1,
				   .migratory = -1, .spin_us = o->spin_us };
	struct watch w = { .fd = -1, .done = { -1, -1 } };
	char bound[64] = "";
	int err;

	if ((err = setup(o, &cfg, bound, sizeof(bound))))
		return err;
	if (!cfg.join) {
		size_t pages;

		printf(" [*] First process of %u: listening on %s\n", cfg.nodes, bound);
		pages = ask_pages(s->con, s->ps, &s->line, &s->cap);
		if (!pages) {
			close(cfg.listen_fd);
			return -1;
		}
		cfg.size = pages * s->ps;
		printf(" [*] Waiting for %u more process%s to join...\n", cfg.nodes - 1,
		       cfg.nodes == 2 ? "" : "es");
	} else {
		printf(" [*] Joining the first process at %s; waiting for it...\n", cfg.join);
		w = (struct watch){ .fd = o->probe_fd, .done = { -1, -1 }, .join = cfg.join };
		if (pipe2(w.done, O_CLOEXEC) || pthread_create(&w.thread, NULL, watch_first, &w)) {
			close(w.fd);
			w.fd = -1;
		}
	}
	fflush(stdout);

	err = udsm_open(&cfg, &s->dsm);
	if (w.fd >= 0) {
		if (write(w.done[1], "", 1) < 0)
			perror("s2dsm: write");
		pthread_join(w.thread, NULL);
	}
	if (w.done[0] >= 0) {
		close(w.done[0]);
		close(w.done[1]);
	}
	if (err) {
		if (cfg.join)
			fprintf(stderr, "s2dsm: could not join the cluster at %s: %s\n", cfg.join,
				udsm_strerror(err));
		else
			fprintf(stderr, "s2dsm: the cluster did not form: %s\n",
				udsm_strerror(err));
		return 1;
	}
	pthread_mutex_lock(&s->con->mu);
	s->con->opened = true;
	pthread_mutex_unlock(&s->con->mu);

	s->base = udsm_base(s->dsm);
	s->ps = udsm_page_size(s->dsm);
	s->npages = udsm_size(s->dsm) / s->ps;
	printf("Address returned by mmap() = %p\n", (void *)s->base);
	printf("Size: %zu bytes (%zu page%s)\n", udsm_size(s->dsm), s->npages,
	       s->npages == 1 ? "" : "s");
	printf(" [*] This process is node %u of %u\n", udsm_node_id(s->dsm), udsm_nodes(s->dsm));
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Page accesses.
 */

/* A clock read costs no system call (vDSO); the coarse one is plenty for FLUSH_NS. */
static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Between the pages of a long command: flush if the output has waited FLUSH_NS. */
static void flush_now_and_then(struct session *s)
{
	uint64_t now = now_ns();

	if (now - s->flushed_ns >= FLUSH_NS) {
		fflush(stdout);
		s->flushed_ns = now;
	}
}

/* Every thread that touches the region calls it first (see touch_page()). */
static void bus_init_thread(void)
{
	pthread_sigmask(SIG_SETMASK, NULL, &bus_mask);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (bus_armed) {
		bus_armed = 0;
		siglongjmp(bus_env, 1);
	}
	/* Not ours: die of it as if nobody had caught it (SA_NODEFER: delivered at once). */
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Store @len bytes of @msg and a NUL into page @page (if @msg), then copy the page into
 * @buf with real loads. Returns false if the access raised SIGBUS: the page died with
 * another node.
 *
 * sigsetjmp() does not save the signal mask: that would cost a system call per access.
 * The handler is installed with SA_NODEFER and an empty sa_mask, so it runs with the mask of
 * the code it interrupted; but whatever stands between the kernel and our handler (a
 * sanitizer's signal wrapper does) may have blocked more, and a SIGBUS that comes while
 * SIGBUS is blocked kills the process: so after a jump the thread's mask is set back to the
 * one bus_init_thread() saved, a system call for a lost page only.
 */
static bool touch_page(struct session *s, size_t page, const char *msg, size_t len, char *buf)
{
	char *p = s->base + page * s->ps;

	if (sigsetjmp(bus_env, 0)) {
		pthread_sigmask(SIG_SETMASK, &bus_mask, NULL);
		return false;
	}
	bus_armed = 1;
	if (msg) {
		memcpy(p, msg, len);
		p[len] = '\0';
	}
	memcpy(buf, p, s->ps);
	bus_armed = 0;
	return true;
}

/* What an access printed: the fault line if it had to fetch, then the page or its loss. */
static void print_access(size_t page, bool fault, bool ok, const char *buf)
{
	if (fault)
		fputs(" [x] PAGEFAULT\n", stdout);
	if (ok)
		printf(" [*] Page %zu:\n%s\n", page, buf);
	else
		printf(" [!] Page %zu is lost: the node holding it is gone\n", page);
}

/*
 * Access page @page (see touch_page()) and print what happened: the fault line if the node's
 * fault counter moved (the service thread counts a fault before it wakes the faulting
 * thread), then the page, or that it is lost.
 */
static void access_page(struct session *s, size_t page, const char *msg, size_t len)
{
	struct udsm_stats before, after;
	bool ok;

	udsm_stats(s->dsm, &before);
	ok = touch_page(s, page, msg, len, s->buf);
	udsm_stats(s->dsm, &after);
	print_access(page, after.faults != before.faults, ok, s->buf);
}

/*
 * A read or write of every page, several accesses in flight at a time.
 *
 * One access after the other, every page costs a whole round trip to the node that has it,
 * and the threads on both sides sleep and wake once per page. AP_THREADS workers each take
 * the next page, make the same access access_page() makes, and leave the copy in a slot of a
 * window of AP_WINDOW; the main thread prints the slots in page order. The output is the
 * same, line for line.
 *
 * Which access faulted is still observed, not guessed, with one shortcut. A read of a page
 * that is INVALID here, or a write of one that is INVALID or SHARED, cannot help faulting
 * (the page is not mapped, or mapped read-only, and only this command's workers touch the
 * region here, one page each): those accesses are the fetches, they run side by side, and
 * print the fault line. Any other access (a page already here, or lost) may or may not fault
 * - another node can take the page away between the look and the access - so it runs alone,
 * with every other worker's access held off (ap->excl), and watches the node's fault counter
 * as access_page() does; such accesses cost no round trip, so running them one at a time
 * costs little. The one difference from the loop of access_page(): a read in the instant in
 * which another node's write is taking the page away here (the state says INVALID already,
 * the mapping is not gone yet) prints the fault line for a copy it read without one.
 */
struct ap_slot {
	bool done;                   /* atomic: fault, ok and buf are filled in */
	bool fault, ok;
	char *buf;                   /* ps + 1 bytes */
};

/*
 * The threads meet through atomics; the mutex and condition variables are only for sleeping,
 * so that the common case (the page is there, the window has room) costs no system call:
 * a sleeper announces itself (main_waits, space_waiters) before it looks again, and the
 * other side looks at the announcement after its update (both sequentially consistent).
 * The main thread sleeps until AP_BATCH pages are ready, not one: a wake-up per page cost
 * it (and the worker that woke it) two futex calls per page.
 */
struct all_pages {
	struct session *s;
	const char *msg;             /* NULL: read */
	size_t len, npages;
	pthread_mutex_t mu;
	pthread_cond_t done_cv;      /* the main thread waits for pages to print */
	pthread_cond_t space_cv;     /* workers wait for room in the window */
	pthread_rwlock_t excl;       /* fetches hold it shared, the other accesses exclusive */
	size_t next;                 /* atomic: the next page to access */
	size_t ndone;                /* atomic: accesses finished */
	size_t printed;              /* atomic: pages printed (and their slots free) */
	size_t want, need;           /* under mu: main waits for page @want and @need done */
	bool main_waits;             /* atomic */
	unsigned space_waiters;      /* atomic */
	struct ap_slot slot[AP_WINDOW]; /* page p in slot[p % AP_WINDOW] */
};

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)

/* Under ap->mu: may the main thread go on printing? */
static bool ap_ready(struct all_pages *ap)
{
	return LOAD(ap->slot[ap->want % AP_WINDOW].done) && LOAD(ap->ndone) >= ap->need;
}

static void *ap_worker(void *arg)
{
	struct all_pages *ap = arg;
	struct session *s = ap->s;

	bus_init_thread();
	for (;;) {
		size_t p = __atomic_fetch_add(&ap->next, 1, __ATOMIC_SEQ_CST);
		struct ap_slot *sl = &ap->slot[p % AP_WINDOW];
		bool ok, fault;
		int st;

		if (p >= ap->npages)
			return NULL;
		if (p >= LOAD(ap->printed) + AP_WINDOW) {
			pthread_mutex_lock(&ap->mu);
			__atomic_add_fetch(&ap->space_waiters, 1, __ATOMIC_SEQ_CST);
			while (p >= LOAD(ap->printed) + AP_WINDOW)
				pthread_cond_wait(&ap->space_cv, &ap->mu);
			__atomic_sub_fetch(&ap->space_waiters, 1, __ATOMIC_SEQ_CST);
			pthread_mutex_unlock(&ap->mu);
		}

		st = udsm_page_state(s->dsm, p);
		fault = ap->msg ? st == UDSM_INVALID || st == UDSM_SHARED : st == UDSM_INVALID;
		if (fault) {
			pthread_rwlock_rdlock(&ap->excl);
			ok = touch_page(s, p, ap->msg, ap->len, sl->buf);
		} else {
			struct udsm_stats before, after;

			pthread_rwlock_wrlock(&ap->excl);
			udsm_stats(s->dsm, &before);
			ok = touch_page(s, p, ap->msg, ap->len, sl->buf);
			udsm_stats(s->dsm, &after);
			fault = after.faults != before.faults;
		}
		pthread_rwlock_unlock(&ap->excl);
		sl->fault = fault;
		sl->ok = ok;
		STORE(sl->done, true);
		__atomic_add_fetch(&ap->ndone, 1, __ATOMIC_SEQ_CST);
		if (LOAD(ap->main_waits)) {
			pthread_mutex_lock(&ap->mu);
			if (ap_ready(ap))
				pthread_cond_signal(&ap->done_cv);
			pthread_mutex_unlock(&ap->mu);
		}
	}
}

/*
 * Access every page (read, or write @msg if not NULL) and print what happened, as
 * access_page() on each page in turn would. Returns 0, or -1 if the workers could not be
 * set up (nothing was accessed).
 */
static int all_pages(struct session *s, const char *msg, size_t len)
{
	unsigned nthreads = s->npages < AP_THREADS ? (unsigned)s->npages : AP_THREADS;
	struct all_pages *ap = calloc(1, sizeof(*ap));
	pthread_rwlockattr_t rwa;
	pthread_t thr[AP_THREADS];
	unsigned started = 0;
	char *bufs;

	if (!ap)
		return -1;
	bufs = calloc(AP_WINDOW, s->ps + 1);
	if (!bufs) {
		free(ap);
		return -1;
	}
	ap->s = s;
	ap->msg = msg;
	ap->len = len;
	ap->npages = s->npages;
	pthread_mutex_init(&ap->mu, NULL);
	pthread_cond_init(&ap->done_cv, NULL);
	pthread_cond_init(&ap->space_cv, NULL);
	/* A worker waiting to access alone must not wait for the fetches to stop coming. */
	pthread_rwlockattr_init(&rwa);
	pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&ap->excl, &rwa);
	pthread_rwlockattr_destroy(&rwa);
	for (unsigned i = 0; i < AP_WINDOW; i++)
		ap->slot[i].buf = bufs + (size_t)i * (s->ps + 1);
	while (started < nthreads && !pthread_create(&thr[started], NULL, ap_worker, ap))
		started++;

	/* Without a worker, nothing is accessed: the caller does it one page at a time. */
	for (size_t p = 0; started && p < s->npages; p++) {
		struct ap_slot *sl = &ap->slot[p % AP_WINDOW];

		if (!LOAD(sl->done)) {
			pthread_mutex_lock(&ap->mu);
			ap->want = p;
			ap->need = s->npages - p < AP_BATCH ? s->npages : p + AP_BATCH;
			STORE(ap->main_waits, true);
			while (!ap_ready(ap))
				pthread_cond_wait(&ap->done_cv, &ap->mu);
			STORE(ap->main_waits, false);
			pthread_mutex_unlock(&ap->mu);
		}

		print_access(p, sl->fault, sl->ok, sl->buf);
		if (p + 1 < s->npages)
			flush_now_and_then(s);

		STORE(sl->done, false);
		STORE(ap->printed, p + 1);
		if (LOAD(ap->space_waiters)) {
			pthread_mutex_lock(&ap->mu);
			pthread_cond_broadcast(&ap->space_cv);
			pthread_mutex_unlock(&ap->mu);
		}
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(thr[i], NULL);
	pthread_rwlock_destroy(&ap->excl);
	pthread_cond_destroy(&ap->space_cv);
	pthread_cond_destroy(&ap->done_cv);
	pthread_mutex_destroy(&ap->mu);
	free(bufs);
	free(ap);
	return started ? 0 : -1;
}

static void show_state(struct session *s, size_t page)
{
	static const char *const names[] = {
		[UDSM_INVALID] = "INVALID", [UDSM_SHARED] = "SHARED", [UDSM_MODIFIED] = "MODIFIED",
		/* The assignment knows three states; a lost page is not valid here either
		 * (reading it reports the loss). */
		[UDSM_LOST] = "INVALID",
	};
	int st = udsm_page_state(s->dsm, page);
	const char *stats = getenv("UDSM_STATS");

	printf(" [*] Page %zu: %s", page, st >= 0 && st <= UDSM_LOST ? names[st] : "?");
	/* With statistics asked for (docs/STATS.md), also how often the page moved, as its home
	 * counted it: this process for the pages it is home of, another one for the others. */
	if (stats && *stats && strcmp(stats, "off")) {
		struct udsm_hot_page hp;
		int err = udsm_hot_page(s->dsm, page, &hp);

		if (err == -EREMOTE) {
			printf("; transfers counted by node %d, its home", udsm_page_home(s->dsm, page));
		} else if (err) {
			printf("; no transfers counted");
		} else {
			printf("; moved %llu time%s, nodes", (unsigned long long)hp.transfers,
			       hp.transfers == 1 ? "" : "s");
			for (unsigned n = 0; n < 64; n++)
				if (hp.nodes & ((uint64_t)1 << n))
					printf(" %u", n);
			if (hp.false_sharing) {
				printf("; FALSE SHARING:");
				for (uint32_t i = 0; i < hp.nranges; i++)
					printf("%s node %u wrote [%u, %u)", i ? "," : "",
					       hp.ranges[i].node, hp.ranges[i].start, hp.ranges[i].end);
			}
		}
	}
	printf("\n");
}

/* ------------------------------------------------------------------------------------------
 * The prompt loop.
 */


/* Ask for a page. Returns 0 with *@page set (-1 = all), or -1 at the end of input. */
static int ask_page(struct session *s, long long *page)
{
	for (;;) {
		char *in;
		int err;

		if (ask(s->con, s->page_prompt, &s->line, &s->cap) < 0)
			return -1;
		in = trim(s->line);
		err = parse_ll(in, page);
		if (!*in)
			printf(" [!] Please type a page number from 0 to %zu, or -1 for all pages.\n",
			       s->npages - 1);
		else if (err == -EINVAL)
			printf(" [!] " QUOTE_FMT " is not a page number: type 0 to %zu, or -1 for all "
			       "pages.\n", QUOTE_ARG(in), s->npages - 1);
		else if (err || *page < -1 || *page >= (long long)s->npages)
			printf(" [!] There is no page " QUOTE_FMT ": type 0 to %zu, or -1 for all "
			       "pages.\n", QUOTE_ARG(in), s->npages - 1);
		else
			return 0;
	}
}

/* Ask for the message to write. Returns its length, or -1 at the end of input. */
static ssize_t ask_message(struct session *s)
{
	ssize_t n = ask(s->con, msg_prompt, &s->line, &s->cap);

	if (n >= 0 && (size_t)n > s->ps - 1) {
		printf(" [!] The message is %zd bytes but a page holds %zu: only the first %zu are "
		       "written.\n", n, s->ps - 1, s->ps - 1);
		n = (ssize_t)(s->ps - 1);
	}
	return n;
}

static void leave(struct session *s)
{
	size_t modified = 0;

	for (size_t p = 0; p < s->npages; p++)
		modified += udsm_page_state(s->dsm, p) == UDSM_MODIFIED;
	/* udsm_close() gives them back to their homes (or, for pages homed here, to the
	 * node that takes our pages over), unless no other node is left. */
	if (modified)
		printf(" [*] Leaving the cluster; handing over %zu page%s modified only here\n",
		       modified, modified == 1 ? "" : "s");
	else
		printf(" [*] Leaving the cluster\n");
	fflush(stdout);
	udsm_close(s->dsm);
	s->dsm = NULL;
}

static void run(struct session *s)
{
	snprintf(s->page_prompt, sizeof(s->page_prompt),
		 "> For which page? (0-%zu, or -1 for all): ", s->npages - 1);
	fputs(commands_line, stdout);

	for (;;) {
		size_t first, last;
		long long page;
		ssize_t len = 0;
		char *in, cmd;

		if (ask(s->con, cmd_prompt, &s->line, &s->cap) < 0)
			break;
		in = trim(s->line);
		if (!*in) {
			printf(" [!] Please type a command: r (read), w (write), v (view state) or q "
			       "(quit).\n");
			continue;
		}
		cmd = (char)tolower((unsigned char)in[0]);
		if (in[1] || !strchr("rwvq", cmd)) {
			printf(" [!] Unknown command " QUOTE_FMT ": type r (read), w (write), v (view "
			       "state) or q (quit).\n", QUOTE_ARG(in));
			continue;
		}
		if (cmd == 'q' || ask_page(s, &page))
			break;
		if (cmd == 'w' && (len = ask_message(s)) < 0)
			break;

		first = page < 0 ? 0 : (size_t)page;
		last = page < 0 ? s->npages - 1 : (size_t)page;
		s->flushed_ns = now_ns();
		if (page < 0 && cmd != 'v' && s->npages > 1 && !s->serial &&
		    !all_pages(s, cmd == 'w' ? s->line : NULL, (size_t)len))
			continue;
		for (size_t p = first; p <= last; p++) {
			if (cmd == 'v')
				show_state(s, p);
			else
				access_page(s, p, cmd == 'w' ? s->line : NULL, (size_t)len);
			if (p != last)
				flush_now_and_then(s);
		}
	}
	leave(s);
}

int main(int argc, char **argv)
{
	struct console con = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct session s = { .con = &con };
	/* SA_NODEFER: see touch_page() */
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };
	struct opts o;
	long ps = sysconf(_SC_PAGESIZE);
	const char *env = getenv("UDSM_LOG_LEVEL");
	int err;

	setvbuf(stdout, out_buf, _IOFBF, sizeof(out_buf));
	if ((err = parse_args(argc, argv, &o)))
		return err;
	if (ps <= 0) {
		fprintf(stderr, "s2dsm: cannot learn the page size\n");
		return 1;
	}
	s.ps = (size_t)ps;
	s.serial = o.serial;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	bus_init_thread();
	/* Library notices become " [!] ..." lines; UDSM_LOG_LEVEL, if set, still decides. */
	con.verbose = env && *env;
	udsm_set_log_func(log_to_console, &con, con.verbose ? 0 : UDSM_LOG_INFO);

	err = open_cluster(&o, &s);
	if (err) {
		free(s.line);
		return err < 0 ? 0 : err;
	}
	s.buf = calloc(1, s.ps + 1);
	if (!s.buf) {
		fprintf(stderr, "s2dsm: out of memory\n");
		udsm_close(s.dsm);
		return 1;
	}
	run(&s);
	free(s.buf);
	free(s.line);
	return 0;
}
