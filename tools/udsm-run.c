/* SPDX-License-Identifier: MIT */
/*
 * udsm-run - start the N processes of a udsm program, here or over ssh.
 *
 *   udsm-run -n N [-H host1,host2,...] [--size S] [--port P] [--tag] program [args...]
 *
 * Rank r gets UDSM_RANK=r, UDSM_NODES=N, UDSM_JOIN=<rank 0's host:port> and, with --size,
 * UDSM_SIZE=S; udsm_open(NULL, ...) reads them (include/udsm.h) and the node id is the rank.
 *
 * Locally, rank 0 listens on 127.0.0.1 on a random free port below the kernel's ephemeral
 * range (or --port).
 * With -H, rank r runs on host[r % hosts] through
 *     ssh -o BatchMode=yes HOST 'cd DIR && IFS= read -r UDSM_SECRET && export UDSM_SECRET &&
 *         exec env UDSM_RANK=r UDSM_NODES=N UDSM_JOIN=host1:P [UDSM_SIZE=S] PROGRAM ARGS...'
 * (every word single-quoted for the remote shell) with the secret written to ssh's standard
 * input, so that it appears on no command line; rank 0 listens on host1:P, P being --port or
 * 20000 + (udsm-run's pid mod 12000). Remote ranks get no other standard input.
 *
 * The secret: UDSM_SECRET or UDSM_SECRET_FILE from udsm-run's environment is passed on; without
 * either, udsm-run makes a random one for this run, so that a cluster it starts is never
 * unauthenticated. Locally, rank 0 reads udsm-run's standard input when it is not a terminal;
 * the other ranks read /dev/null. Each rank runs in its own process group: a signal reaches
 * them only through udsm-run.
 *
 * SIGINT, SIGTERM and SIGHUP are forwarded to every rank (a second one, or 10 s without an
 * end, becomes SIGKILL). When a rank fails (non-zero exit or a signal), the others get
 * SIGTERM, then SIGKILL 5 s later. udsm-run exits with the worst status of any rank - the
 * highest exit code, a death by signal S counting as 128 + S - leaving out the ranks it
 * killed itself after a failure; and it waits for every rank, so no zombie is left. With
 * --tag, processes a rank left behind that still hold its output open 5 s after the last
 * rank ended are killed (its whole process group), so udsm-run always ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "os/env.h"
#include "udsm.h"

#define MAX_RANKS UDSM_MAX_NODES
#define LINE_MAX_ 4096     /* a longer line is cut into pieces, each tagged */
#define FAIL_GRACE_MS 5000 /* SIGTERM -> SIGKILL after a rank failed */
#define SIG_GRACE_MS 10000 /* forwarded signal -> SIGKILL */

struct stream {
	int fd;      /* read end of the rank's stdout or stderr pipe; -1 when closed */
	FILE *out;   /* where its lines go */
	size_t len;  /* bytes of an unfinished line in buf */
	char buf[LINE_MAX_];
};

struct rank {
	pid_t pid;  /* 0 once reaped */
	pid_t pgid; /* its process group, which may outlive it */
	int status;
	bool killed; /* udsm-run sent it SIGTERM/SIGKILL after another rank failed */
	struct stream s[2];
};

static struct rank ranks[MAX_RANKS];
static unsigned nranks;
static bool tag;

static void usage(FILE *f)
{
	fprintf(f, "usage: udsm-run -n N [-H host1,host2,...] [--size S] [--port P] [--tag] "
		   "program [args...]\n"
		   "  -n, --nodes N     number of processes (1..%d); rank r is node r\n"
		   "  -H, --hosts LIST  run rank r on host r mod |LIST| over ssh (default: here)\n"
		   "  -s, --size S      region size (UDSM_SIZE: bytes or with K, M, G suffix)\n"
		   "  -p, --port P      rank 0's port (default: a free one here; with -H, "
		   "20000 + pid mod 12000)\n"
		   "  -t, --tag         prefix every output line with \"[rank] \"\n",
		MAX_RANKS);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The lowest port the kernel hands out by itself (to a bind to port 0, to a connect()). */
static int ephemeral_low(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
	int lo = 32768, hi;

	if (f) {
		if (fscanf(f, "%d %d", &lo, &hi) != 2)
			lo = 32768;
		fclose(f);
	}
	return lo;
}

/* @port if nothing holds it at 127.0.0.1 now (a socket in TIME_WAIT does not: rank 0's
 * listener reuses the address), or with @port 0 one the kernel gives; -1 if none. */
static int try_port(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, got = -1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		got = ntohs(sa.sin_port);
	close(fd);
	return got;
}

/*
 * A port for rank 0 that nobody holds at 127.0.0.1 now: a random one below the kernel's
 * ephemeral range, so that between this check and rank 0's bind a moment later no socket
 * anywhere can be given it by the kernel (with a port of the range, seen: mpirun's own TCP
 * connections took it, and rank 0 failed with "Address already in use"). If the range
 * leaves no room below it, or 256 tries found nothing free there, one the kernel gives.
 */
static int free_port(void)
{
	int lo = ephemeral_low(), base = lo > (int)ENV_PORT_BASE + 1024 ? (int)ENV_PORT_BASE : 1024;

	for (int i = 0; i < 256 && lo > base; i++) {
		uint32_t r;
		int port;

		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = (uint32_t)getpid() * 2654435761u + (uint32_t)i;
		port = try_port(base + (int)(r % (uint32_t)(lo - base)));
		if (port > 0)
			return port;
	}
	return try_port(0);
}

/* UDSM_SECRET for this run when the caller set none: 32 random bytes, hex. */
static int make_secret(char *hex, size_t len)
{
	unsigned char b[32];
	size_t got = 0;

	if (len < 2 * sizeof(b) + 1)
		return -1;
	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);

		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0)
			got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(b); i++)
		snprintf(hex + 2 * i, 3, "%02x", b[i]);
	explicit_bzero(b, sizeof(b));
	return 0;
}

/* Append @s single-quoted for a POSIX shell to @buf (of @cap bytes, @*len used). */
static int sh_quote(char *buf, size_t cap, size_t *len, const char *s)
{
	if (*len + 3 >= cap)
		return -1;
	buf[(*len)++] = ' ';
	buf[(*len)++] = '\'';
	for (; *s; s++) {
		const char *piece = *s == '\'' ? "'\\''" : NULL;
		size_t n = piece ? 4 : 1;

		if (*len + n + 2 >= cap)
			return -1;
		if (piece)
			memcpy(buf + *len, piece, n);
		else
			buf[*len] = *s;
		*len += n;
	}
	buf[(*len)++] = '\'';
	buf[*len] = '\0';
	return 0;
}

/* The remote command of rank @r over ssh (see the top of the file). */
static char *remote_command(unsigned r, const char *join, const char *size, bool send_secret,
			    char **argv)
{
	size_t cap = 65536, len = 0;
	char *cmd = malloc(cap), *cwd = getcwd(NULL, 0), word[512];
	const char *sfile = getenv("UDSM_SECRET_FILE");
	int bad = 0;

	if (!cmd || !cwd) {
		free(cmd);
		free(cwd);
		return NULL;
	}
	len = (size_t)snprintf(cmd, cap, "cd");
	bad |= sh_quote(cmd, cap, &len, cwd);
	len += (size_t)snprintf(cmd + len, cap - len, " &&%s exec env",
				send_secret ? " IFS= read -r UDSM_SECRET && export UDSM_SECRET &&"
					    : "");
	snprintf(word, sizeof(word), "UDSM_RANK=%u", r);
	bad |= sh_quote(cmd, cap, &len, word);
	snprintf(word, sizeof(word), "UDSM_NODES=%u", nranks);
	bad |= sh_quote(cmd, cap, &len, word);
	snprintf(word, sizeof(word), "UDSM_JOIN=%s", join);
	bad |= sh_quote(cmd, cap, &len, word);
	if (size) {
		snprintf(word, sizeof(word), "UDSM_SIZE=%s", size);
		bad |= sh_quote(cmd, cap, &len, word);
	}
	if (!send_secret && sfile) {
		snprintf(word, sizeof(word), "UDSM_SECRET_FILE=%s", sfile);
		bad |= sh_quote(cmd, cap, &len, word);
	}
	for (; *argv; argv++)
		bad |= sh_quote(cmd, cap, &len, *argv);
	free(cwd);
	if (bad) {
		free(cmd);
		errno = E2BIG;
		return NULL;
	}
	return cmd;
}

/* Send @sig to rank @r's process group (its own, see start()). */
static void signal_rank(struct rank *r, int sig)
{
	if (r->pid > 0)
		kill(-r->pid, sig);
}

static void signal_all(int sig, bool mark_killed)
{
	for (unsigned i = 0; i < nranks; i++)
		if (ranks[i].pid > 0) {
			ranks[i].killed |= mark_killed;
			signal_rank(&ranks[i], sig);
		}
}

/* Write what @s holds (a whole line, or a piece of a long one) with its rank's tag. */
static void flush_line(unsigned r, struct stream *s)
{
	if (!s->len)
		return;
	fprintf(s->out, "[%u] %.*s%s", r, (int)s->len, s->buf,
		s->buf[s->len - 1] == '\n' ? "" : "\n");
	fflush(s->out);
	s->len = 0;
}

/* Stream @s of rank @r is readable: pass on every complete line. */
static void pump(unsigned r, struct stream *s)
{
	ssize_t n = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		flush_line(r, s);
		close(s->fd);
		s->fd = -1;
		return;
	}
	s->len += (size_t)n;
	for (;;) {
		char *nl = memchr(s->buf, '\n', s->len);
		size_t line, rest;

		if (!nl) {
			if (s->len == sizeof(s->buf))
				flush_line(r, s);
			return;
		}
		line = (size_t)(nl - s->buf) + 1;
		rest = s->len - line;
		s->len = line;
		flush_line(r, s);
		memmove(s->buf, nl + 1, rest);
		s->len = rest;
	}
}

/* Start rank @r; returns 0 or -1 with the reason printed. */
static int start(unsigned r, char **argv, char **hosts, unsigned nhosts, const char *join,
		 const char *size, const char *secret, const sigset_t *oldmask)
{
	struct rank *rk = &ranks[r];
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, in[2] = { -1, -1 };
	char *cmd = NULL;
	const char *host = nhosts ? hosts[r % nhosts] : NULL;
	pid_t pid;

	rk->s[0].fd = rk->s[1].fd = -1;
	if (tag && (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)))
		goto sys;
	if (host) {
		if (!(cmd = remote_command(r, join, size, secret != NULL, argv)))
			goto sys;
		if (pipe2(in, O_CLOEXEC))
			goto sys;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		goto sys;
	if (pid == 0) {
		char v[32];
		int null;

		setpgid(0, 0);
		if (host) {
			dup2(in[0], 0);
		} else if (r != 0 || isatty(0)) {
			if ((null = open("/dev/null", O_RDONLY)) >= 0)
				dup2(null, 0);
		}
		if (tag) {
			dup2(out[1], 1);
			dup2(err[1], 2);
		}
		sigprocmask(SIG_SETMASK, oldmask, NULL);
		signal(SIGPIPE, SIG_DFL); /* an ignored signal would stay ignored across exec */
		if (host) {
			execlp("ssh", "ssh", "-o", "BatchMode=yes", host, cmd, (char *)NULL);
			fprintf(stderr, "udsm-run: rank %u: cannot run ssh: %s\n", r,
				strerror(errno));
			_exit(127);
		}
		snprintf(v, sizeof(v), "%u", r);
		setenv("UDSM_RANK", v, 1);
		snprintf(v, sizeof(v), "%u", nranks);
		setenv("UDSM_NODES", v, 1);
		setenv("UDSM_JOIN", join, 1);
		if (size)
			setenv("UDSM_SIZE", size, 1);
		if (secret)
			setenv("UDSM_SECRET", secret, 1);
		execvp(argv[0], argv);
		fprintf(stderr, "udsm-run: rank %u: cannot run %s: %s\n", r, argv[0],
			strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid); /* also here: no signal may find the rank still in our group */
	rk->pid = rk->pgid = pid;
	if (host) {
		/* The secret is the first line the remote shell reads; then end of input. */
		close(in[0]);
		if (secret)
			dprintf(in[1], "%s\n", secret);
		close(in[1]);
	}
	if (tag) {
		close(out[1]);
		close(err[1]);
		rk->s[0] = (struct stream){ .fd = out[0], .out = stdout };
		rk->s[1] = (struct stream){ .fd = err[0], .out = stderr };
	}
	free(cmd);
	return 0;
sys:
	fprintf(stderr, "udsm-run: cannot start rank %u: %s\n", r, strerror(errno));
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
		if (in[i] >= 0)
			close(in[i]);
	}
	free(cmd);
	return -1;
}

/* The status udsm-run reports for one rank: the exit code, or 128 + the signal. */
static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

static void describe(unsigned r, int status)
{
	if (WIFSIGNALED(status))
		fprintf(stderr, "udsm-run: rank %u (pid %d) killed by signal %d (%s)\n", r,
			(int)ranks[r].pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		fprintf(stderr, "udsm-run: rank %u (pid %d) exited with status %d\n", r,
			(int)ranks[r].pid, WEXITSTATUS(status));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "nodes", required_argument, NULL, 'n' },
		{ "hosts", required_argument, NULL, 'H' },
		{ "size", required_argument, NULL, 's' },
		{ "port", required_argument, NULL, 'p' },
		{ "tag", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *hosts[MAX_RANKS], *hostlist = NULL, join[ENV_ADDR_MAX], secret_buf[80];
	const char *size = NULL, *secret = NULL;
	unsigned nhosts = 0, running = 0;
	long port = -1;
	int64_t kill_at = INT64_MAX;
	bool failed = false, stopping = false;
	int worst = 0, c, sfd;
	sigset_t mask, oldmask;

	while ((c = getopt_long(argc, argv, "+n:H:s:p:th", opts, NULL)) != -1) {
		char *end;
		long v;
		size_t sz;

		switch (c) {
		case 'n':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > MAX_RANKS) {
				fprintf(stderr, "udsm-run: -n %s: want 1..%d processes\n", optarg,
					MAX_RANKS);
				return 2;
			}
			nranks = (unsigned)v;
			break;
		case 'H':
			hostlist = optarg;
			break;
		case 's':
			if (env_parse_size(optarg, &sz)) {
				fprintf(stderr, "udsm-run: --size %s: want bytes, or a number "
					"with a K, M, G or T suffix\n", optarg);
				return 2;
			}
			size = optarg;
			break;
		case 'p':
			port = strtol(optarg, &end, 10);
			if (*end || port < 1 || port > 65535) {
				fprintf(stderr, "udsm-run: --port %s: want 1..65535\n", optarg);
				return 2;
			}
			break;
		case 't':
			tag = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!nranks || optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (hostlist) {
		for (char *save = NULL, *h = strtok_r(hostlist, ",", &save); h;
		     h = strtok_r(NULL, ",", &save)) {
			if (nhosts == MAX_RANKS) {
				fprintf(stderr, "udsm-run: more than %d hosts\n", MAX_RANKS);
				return 2;
			}
			hosts[nhosts++] = h;
		}
		if (!nhosts) {
			fprintf(stderr, "udsm-run: -H: no host given\n");
			return 2;
		}
		if (port < 0)
			port = ENV_PORT_BASE + (unsigned)getpid() % ENV_PORT_SPAN;
		snprintf(join, sizeof(join), "%s:%ld", hosts[0], port);
	} else {
		if (port < 0 && (port = free_port()) < 0) {
			fprintf(stderr, "udsm-run: cannot find a free port: %s\n", strerror(errno));
			return 1;
		}
		snprintf(join, sizeof(join), "127.0.0.1:%ld", port);
	}
	if (getenv("UDSM_SECRET") && *getenv("UDSM_SECRET")) {
		secret = getenv("UDSM_SECRET");
	} else if (!getenv("UDSM_SECRET_FILE")) {
		if (make_secret(secret_buf, sizeof(secret_buf))) {
			fprintf(stderr, "udsm-run: cannot make a secret: %s\n", strerror(errno));
			return 1;
		}
		secret = secret_buf;
	}

	/* Signals arrive through a descriptor, between polls: no handler races a fork. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &mask, &oldmask) ||
	    (sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		fprintf(stderr, "udsm-run: signalfd: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN); /* our stdout closing must not kill us before the ranks */

	for (unsigned r = 0; r < nranks; r++) {
		if (start(r, argv + optind, hosts, nhosts, join, size, secret, &oldmask)) {
			failed = stopping = true;
			worst = 1;
			signal_all(SIGTERM, true);
			kill_at = now_ms() + FAIL_GRACE_MS;
			break;
		}
		running++;
	}
	explicit_bzero(secret_buf, sizeof(secret_buf));

	for (;;) {
		struct pollfd pf[1 + 2 * MAX_RANKS];
		struct stream *who[1 + 2 * MAX_RANKS];
		unsigned n = 0, open_streams = 0;
		int64_t now = now_ms();
		int timeout;

		for (unsigned r = 0; r < nranks; r++)
			for (int k = 0; k < 2; k++)
				if (ranks[r].s[k].fd >= 0)
					open_streams++;
		if (!running && !open_streams)
			break;
		if (now >= kill_at && running) {
			fprintf(stderr, "udsm-run: ranks still running; killing them\n");
			signal_all(SIGKILL, failed);
			kill_at = INT64_MAX;
		}
		pf[n] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		who[n++] = NULL;
		for (unsigned r = 0; r < nranks; r++)
			for (int k = 0; k < 2; k++)
				if (ranks[r].s[k].fd >= 0) {
					pf[n] = (struct pollfd){ .fd = ranks[r].s[k].fd,
								 .events = POLLIN };
					who[n++] = &ranks[r].s[k];
				}
		/* Once every rank is gone, a grandchild holding a pipe open gets a bound too. */
		if (!running && kill_at == INT64_MAX)
			kill_at = now + FAIL_GRACE_MS;
		timeout = kill_at == INT64_MAX ? -1 : kill_at <= now ? 0 : (int)(kill_at - now);
		if (poll(pf, n, timeout) < 0 && errno != EINTR)
			break;
		for (unsigned k = 1; k < n; k++)
			if (pf[k].revents) {
				unsigned r = 0;

				while (&ranks[r].s[0] != who[k] && &ranks[r].s[1] != who[k])
					r++;
				pump(r, who[k]);
			}
		if (!running && kill_at != INT64_MAX && now_ms() >= kill_at) {
			/* Streams a process the rank left behind keeps open: stop reading them,
			 * and end what is left of the ranks' process groups. */
			fprintf(stderr, "udsm-run: processes left behind by the ranks still hold "
					"their output open; killing them\n");
			for (unsigned r = 0; r < nranks; r++)
				if (ranks[r].pgid > 0)
					kill(-ranks[r].pgid, SIGKILL);
			for (unsigned r = 0; r < nranks; r++)
				for (int k = 0; k < 2; k++)
					if (ranks[r].s[k].fd >= 0) {
						flush_line(r, &ranks[r].s[k]);
						close(ranks[r].s[k].fd);
						ranks[r].s[k].fd = -1;
					}
		}
		if (!(pf[0].revents & POLLIN))
			continue;
		struct signalfd_siginfo si;

		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			int sig = (int)si.ssi_signo;

			if (sig != SIGCHLD) {
				if (stopping) {
					signal_all(SIGKILL, false);
				} else {
					fprintf(stderr, "udsm-run: %s: passing it on to every "
						"rank\n", strsignal(sig));
					signal_all(sig, false);
					stopping = true;
					if (kill_at == INT64_MAX)
						kill_at = now_ms() + SIG_GRACE_MS;
				}
				continue;
			}
		}
		/* Reap every rank that ended (SIGCHLD signals may merge). */
		for (;;) {
			int status;
			pid_t pid = waitpid(-1, &status, WNOHANG);
			unsigned r;

			if (pid <= 0)
				break;
			for (r = 0; r < nranks && ranks[r].pid != pid; r++)
				;
			if (r == nranks)
				continue;
			running--;
			int code = exit_code(status);

			/* A rank udsm-run killed after another failed does not count. */
			bool ours = ranks[r].killed && WIFSIGNALED(status) &&
				    (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGKILL);

			if (code && !ours) {
				describe(r, status);
				if (code > worst)
					worst = code;
				if (!failed && !stopping) {
					fprintf(stderr, "udsm-run: stopping the other ranks\n");
					signal_all(SIGTERM, true);
					kill_at = now_ms() + FAIL_GRACE_MS;
				}
				failed = stopping = true;
			}
			ranks[r].pid = 0;
		}
	}
	/* Every rank reaped above; leave nothing behind even on an unexpected poll error. */
	for (unsigned r = 0; r < nranks; r++)
		if (ranks[r].pid > 0) {
			kill(-ranks[r].pid, SIGKILL);
			waitpid(ranks[r].pid, NULL, 0);
		}
	return worst;
}
