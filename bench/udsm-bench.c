/* SPDX-License-Identifier: MIT */
/*
 * udsm-bench - latency, traffic and bandwidth of libudsm, with the floors it is measured
 * against taken in the same run.
 *
 * By default it forks the nodes itself: a 2-node cluster for the floors and most workloads, a
 * 4-node one for the 3-sharer upgrade and a 4- and an 8-node one for barrier scaling. Node 0
 * tells the parent its port through a pipe (udsm_config.on_listen); node 0 also times and
 * sends its figures to the parent through another pipe. Every wait is bounded: the parent kills
 * all nodes when one fails or the deadline passes, and every node has an alarm of its own.
 * With --listen/--join the same node program runs on nodes started by hand, one cluster.
 *
 * docs/PERFORMANCE.md describes the workloads, the method and the results.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define MAX_CPUS 256
#define REGIME_POLL_US 50 /* the forced polling regime: spin_us of the old default */
#define MAX_ROUNDS 16	  /* --rounds */
/* What the extra rounds of the 2-node latency targets run. */
#define ROUND_WORK (W_READ | W_UPGRADE1 | W_PINGPONG)

struct cli {
	bool quick, json;
	unsigned iters;		/* 0: mode default */
	int spin_us;
	int readahead;
	unsigned max_nodes;	/* 0: mode default */
	uint64_t scan_mb;	/* 0: mode default */
	const char *pin;
	const char *listen, *join;
	unsigned timeout_s;
	unsigned work;
	unsigned rounds;	/* 0: mode default */
	int svc_nice;
	int hold_us;
	struct pin pins[UDSM_MAX_NODES];
	unsigned npins;
};

static const struct {
	const char *name;
	unsigned bits;
} work_names[] = {
	{ "floor", W_FLOOR }, { "read", W_READ }, { "write", W_WRITE },
	{ "upgrade", W_UPGRADE1 | W_UPGRADE3 }, { "zero", W_ZERO }, { "pingpong", W_PINGPONG },
	{ "false", W_FALSE }, { "scan", W_SCAN }, { "barrier", W_BARRIER },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: udsm-bench [options]\n"
		"Measures libudsm against raw TCP and userfaultfd floors taken in the same run.\n\n"
		"  --quick              short run (a few seconds; the test suite uses it)\n"
		"  --json               also print one JSON line per figure and per ratio\n"
		"  -n, --iterations N   samples per latency figure (default 2000, quick 100)\n"
		"  --spin MODE          the service threads' waiting (udsm_config.spin_us): auto\n"
		"                       (default, the library's automatic mode; the latency\n"
		"                       figures are then also measured with polling and with\n"
		"                       sleeping forced, '@poll'/'@sleep'), never (or 0), or US:\n"
		"                       poll US microseconds after every event. The floors are\n"
		"                       measured polling (US, or 50) and sleeping ('_sleep')\n"
		"  --readahead N        udsm_config.readahead (default 0 = library default; -1 off)\n"
		"  --nodes N            fork mode: largest cluster, barriers at 2, 4, 8 up to N\n"
		"                       (default 8); --listen: the cluster size (default 2)\n"
		"  --pin MODE           auto (default; none with --listen/--join): node i on\n"
		"                       CPU i mod CPUs, both its threads\n"
		"                       | none (unpinned) | LIST: CPU per node id, 'app/svc' to\n"
		"                       split a node's application and service threads,\n"
		"                       e.g. 0,1 or 0/1,1/0\n"
		"  --hold US            udsm_config.hold_us (default 0 = library default; -1 none)\n"
		"  --svc-nice N         nice value of every node's service thread (default: as\n"
		"                       the process; negative needs privilege)\n"
		"  --scan-mb MB         scan size (default 256, quick 8)\n"
		"  --only LIST          workloads: floor,read,write,upgrade,zero,pingpong,false,\n"
		"                       scan,barrier (default all)\n"
		"  --listen HOST:PORT   be node 0 of a cluster of --nodes started by hand; prints\n"
		"  --join HOST:PORT     be another node of it (takes its parameters from node 0)\n"
		"  --timeout S          kill everything after S seconds (default 300, quick 100)\n"
		"  --rounds N           measure the 2-node latency targets and their floors N\n"
		"                       times, each in a cluster of its own (default 5, quick 2);\n"
		"                       a target's verdict is the median of the N same-run ratios\n"
		"  -h, --help\n");
}

static int parse_pin(struct cli *c, const char *s)
{
	int cpus[MAX_CPUS], ncpu = allowed_cpus(cpus, MAX_CPUS);

	c->npins = 0;
	if (!strcmp(s, "none"))
		return 0;
	if (!strcmp(s, "auto")) {
		if (ncpu <= 0)
			return -1;
		for (int i = 0; i < UDSM_MAX_NODES; i++)
			c->pins[i].app = c->pins[i].svc = cpus[i % ncpu];
		c->npins = UDSM_MAX_NODES;
		return 0;
	}
	while (*s && c->npins < UDSM_MAX_NODES) {
		char *end;
		long a = strtol(s, &end, 10), b;

		if (end == s || a < 0 || a >= CPU_SETSIZE)
			return -1;
		b = a;
		s = end;
		if (*s == '/') {
			b = strtol(s + 1, &end, 10);
			if (end == s + 1 || b < 0 || b >= CPU_SETSIZE)
				return -1;
			s = end;
		}
		c->pins[c->npins++] = (struct pin){ (int)a, (int)b };
		if (*s == ',')
			s++;
		else if (*s)
			return -1;
	}
	return c->npins ? 0 : -1;
}

static int parse_only(struct cli *c, const char *s)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	c->work = 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < sizeof(work_names) / sizeof(work_names[0]); i++)
			if (!strcmp(t, work_names[i].name))
				break;
		if (i == sizeof(work_names) / sizeof(work_names[0]))
			return -1;
		c->work |= work_names[i].bits;
	}
	return c->work ? 0 : -1;
}

static long num(const char *s, const char *what, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < lo || v > hi)
		die("bad %s '%s' (%ld..%ld)", what, s, lo, hi);
	return v;
}

static void parse_args(struct cli *c, int argc, char **argv)
{
	enum { O_QUICK = 256, O_JSON, O_SPIN, O_RA, O_NODES, O_PIN, O_SCAN, O_ONLY, O_LISTEN,
	       O_JOIN, O_TIMEOUT, O_SVC_NICE, O_HOLD, O_ROUNDS };
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, O_QUICK },
		{ "json", no_argument, NULL, O_JSON },
		{ "iterations", required_argument, NULL, 'n' },
		{ "spin", required_argument, NULL, O_SPIN },
		{ "readahead", required_argument, NULL, O_RA },
		{ "nodes", required_argument, NULL, O_NODES },
		{ "pin", required_argument, NULL, O_PIN },
		{ "scan-mb", required_argument, NULL, O_SCAN },
		{ "only", required_argument, NULL, O_ONLY },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "join", required_argument, NULL, O_JOIN },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "svc-nice", required_argument, NULL, O_SVC_NICE },
		{ "hold", required_argument, NULL, O_HOLD },
		{ "rounds", required_argument, NULL, O_ROUNDS },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool pin_given = false;
	int ch;

	memset(c, 0, sizeof(*c));
	c->spin_us = 0; /* automatic: the library's default */
	c->work = W_ALL_;
	c->pin = "auto";
	parse_pin(c, c->pin);
	while ((ch = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
		switch (ch) {
		case O_QUICK:
			c->quick = true;
			break;
		case O_JSON:
			c->json = true;
			break;
		case 'n':
			c->iters = (unsigned)num(optarg, "iteration count", 10, 10000000);
			break;
		case O_SPIN:
			if (!strcmp(optarg, "auto"))
				c->spin_us = 0;
			else if (!strcmp(optarg, "never") || !strcmp(optarg, "0"))
				c->spin_us = -1;
			else
				c->spin_us = (int)num(optarg, "spin", 1, 10000000);
			break;
		case O_RA:
			c->readahead = (int)num(optarg, "read-ahead", -1, 4096);
			break;
		case O_NODES:
			c->max_nodes = (unsigned)num(optarg, "node count", 2, UDSM_MAX_NODES);
			break;
		case O_PIN:
			pin_given = true;
			c->pin = optarg;
			if (parse_pin(c, optarg))
				die("bad --pin '%s' (none, auto, or CPU[/CPU],...)", optarg);
			break;
		case O_SCAN:
			c->scan_mb = (uint64_t)num(optarg, "scan size", 1, 1 << 20);
			break;
		case O_ONLY:
			if (parse_only(c, optarg))
				die("bad --only '%s'", optarg);
			break;
		case O_LISTEN:
			c->listen = optarg;
			break;
		case O_JOIN:
			c->join = optarg;
			break;
		case O_TIMEOUT:
			c->timeout_s = (unsigned)num(optarg, "timeout", 1, 86400);
			break;
		case O_HOLD:
			c->hold_us = (int)num(optarg, "hold", -1, 10000000);
			break;
		case O_ROUNDS:
			c->rounds = (unsigned)num(optarg, "round count", 1, MAX_ROUNDS);
			break;
		case O_SVC_NICE:
			c->svc_nice = (int)num(optarg, "nice value", -20, 19);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		usage(stderr);
		exit(2);
	}
	if (c->listen && c->join)
		die("--listen and --join exclude each other");
	/* One node per host: leave placement to the scheduler unless told. */
	if ((c->listen || c->join) && !strcmp(c->pin, "auto") && !pin_given)
		c->npins = 0, c->pin = "none";
	if (!c->timeout_s)
		c->timeout_s = c->quick ? 100 : 300;
	if (!c->rounds)
		c->rounds = c->quick ? 2 : 5;
}

/* ------------------------------------------------------------------------------------------
 * Fork mode.
 */

struct kids {
	pid_t pid[UDSM_MAX_NODES];
	unsigned n;
};

static void kill_all(struct kids *k)
{
	for (unsigned i = 0; i < k->n; i++)
		if (k->pid[i] > 0)
			kill(k->pid[i], SIGKILL);
	for (unsigned i = 0; i < k->n; i++)
		if (k->pid[i] > 0)
			waitpid(k->pid[i], NULL, 0);
	k->n = 0;
}

/* Reap children that have exited; returns -1 if one failed. */
static int reap(struct kids *k, unsigned *alive)
{
	for (unsigned i = 0; i < k->n; i++) {
		int st;

		if (k->pid[i] <= 0 || waitpid(k->pid[i], &st, WNOHANG) != k->pid[i])
			continue;
		k->pid[i] = 0;
		(*alive)--;
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			if (WIFSIGNALED(st))
				warnx_("node process %u died of signal %d (%s)", i, WTERMSIG(st),
				       strsignal(WTERMSIG(st)));
			else
				warnx_("node process %u failed (exit status %d)", i,
				       WEXITSTATUS(st));
			return -1;
		}
	}
	return 0;
}

/*
 * Fork the node that should get id @idx. With a placement, the child is born on its CPU (the
 * parent takes that CPU for the fork and gives it back after), so that none of its threads
 * runs elsewhere before node_run() pins them: "node i on CPU i" from the first instruction,
 * not from after udsm_open(). Ids go by order of arrival, so a joiner may still get another
 * id and be moved then.
 */
static pid_t spawn(const struct node_opts *o, unsigned idx, int close1, int close2)
{
	pid_t parent = getpid(), pid;
	cpu_set_t old;
	bool moved = false;

	fflush(stdout);
	fflush(stderr);
	if (o->pins && o->npins && o->pins[idx % o->npins].app >= 0 &&
	    !sched_getaffinity(0, sizeof(old), &old))
		moved = !pin_self(o->pins[idx % o->npins].app);
	pid = fork();
	if (pid != 0) {
		if (moved)
			sched_setaffinity(0, sizeof(old), &old);
		return pid;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	if (close1 >= 0)
		close(close1);
	if (close2 >= 0)
		close(close2);
	_exit(node_run(o) ? 1 : 0);
}

/*
 * One cluster of the run. @spin_us: udsm_config.spin_us of its nodes; @suffix: appended to
 * every figure's name (the forced regimes, "@poll" and "@sleep"); @keep: if set, the only
 * figure kept (the 3-node cluster measures the third-party-home miss).
 */
static int run_cluster(const struct cli *c, unsigned nodes, const struct params *p,
		       struct sink *out, uint64_t deadline, int spin_us, const char *suffix,
		       const char *keep)
{
	struct kids k = { .n = 0 };
	int port[2] = { -1, -1 }, res[2] = { -1, -1 }, ret = -1;
	char addr[128];
	size_t alen = 0, rlen = 0;
	unsigned alive = 0;
	union {
		struct result r;
		char b[sizeof(struct result)];
	} rec;
	int timeout_ms = (int)((deadline - now_ns()) / 1000000);
	struct sink child_sink = { .fd = -1 };
	struct node_opts o = {
		.p = p, .pins = c->npins ? c->pins : NULL, .npins = c->npins, .nodes = nodes,
		.spin_us = spin_us, .readahead = c->readahead, .svc_nice = c->svc_nice,
		.hold_us = c->hold_us, .port_fd = -1, .timeout_ms = timeout_ms, .sink = &child_sink,
	};

	if (timeout_ms <= 1000) {
		warnx_("no time left for the %u-node cluster", nodes);
		return -1;
	}
	if (pipe2(port, O_CLOEXEC) || pipe2(res, O_CLOEXEC))
		die("pipe: %s", strerror(errno));

	/* Node 0: reports its port on port[1], its figures on res[1]. */
	o.port_fd = port[1];
	child_sink.fd = res[1];
	k.pid[0] = spawn(&o, 0, port[0], res[0]);
	if (k.pid[0] < 0)
		die("fork: %s", strerror(errno));
	k.n = alive = 1;
	close(port[1]);
	close(res[1]);
	port[1] = res[1] = -1;

	while (!memchr(addr, '\n', alen)) {
		struct pollfd pf = { .fd = port[0], .events = POLLIN };
		ssize_t r;

		if (now_ns() > deadline) {
			warnx_("node 0 did not start listening in time");
			goto out;
		}
		if (poll(&pf, 1, 100) <= 0) {
			if (reap(&k, &alive) || !alive)
				goto out;
			continue;
		}
		r = read(port[0], addr + alen, sizeof(addr) - 1 - alen);
		if (r <= 0) {
			warnx_("node 0 failed before it listened");
			goto out;
		}
		alen += (size_t)r;
		if (alen >= sizeof(addr) - 1)
			goto out;
	}
	*strchr(addr, '\n') = '\0';

	/* The joiners. They do not report; node ids go by order of arrival. */
	o.p = NULL;
	o.port_fd = -1;
	o.join = addr;
	o.sink = NULL;
	for (unsigned i = 1; i < nodes; i++) {
		k.pid[i] = spawn(&o, i, port[0], res[0]);
		if (k.pid[i] < 0) {
			warnx_("fork: %s", strerror(errno));
			goto out;
		}
		k.n++;
		alive++;
	}

	/* Figures, until node 0 closes the pipe; any failure or the deadline ends it. */
	for (;;) {
		struct pollfd pf = { .fd = res[0], .events = POLLIN };
		ssize_t r;

		if (now_ns() > deadline) {
			warnx_("the %u-node cluster did not finish in time; killing it", nodes);
			goto out;
		}
		if (reap(&k, &alive))
			goto out;
		if (poll(&pf, 1, 100) <= 0)
			continue;
		r = read(res[0], rec.b + rlen, sizeof(rec) - rlen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		rlen += (size_t)r;
		if (rlen == sizeof(rec)) {
			rec.r.bench[sizeof(rec.r.bench) - 1] = '\0';
			rec.r.placement[sizeof(rec.r.placement) - 1] = '\0';
			rec.r.note[sizeof(rec.r.note) - 1] = '\0';
			if (!keep || !strcmp(rec.r.bench, keep)) {
				size_t l = strlen(rec.r.bench);

				if (suffix)
					snprintf(rec.r.bench + l, sizeof(rec.r.bench) - l, "%s",
						 suffix);
				sink_emit(out, &rec.r);
			}
			rlen = 0;
		}
	}
	while (alive) {
		if (reap(&k, &alive))
			goto out;
		if (now_ns() > deadline) {
			warnx_("the %u-node cluster did not exit in time; killing it", nodes);
			goto out;
		}
		usleep(2000);
	}
	k.n = 0;
	ret = 0;
out:
	kill_all(&k);
	for (int i = 0; i < 2; i++) {
		if (port[i] >= 0)
			close(port[i]);
		if (res[i] >= 0)
			close(res[i]);
	}
	return ret;
}

/* ------------------------------------------------------------------------------------------
 * Report.
 */

static const struct result *find(const struct sink *s, const char *bench, unsigned nodes)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->r[i].bench, bench) && (!nodes || s->r[i].nodes == nodes))
			return &s->r[i];
	return NULL;
}

/* @bench with suffix @sfx (a regime) of round @rs ("" the first, "#k" the k-th). */
static const struct result *find_round(const struct sink *s, const char *bench,
				       const char *sfx, const char *rs, unsigned nodes)
{
	char nm[64];

	snprintf(nm, sizeof(nm), "%s%s%s", bench, sfx, rs);
	return find(s, nm, nodes);
}

static const struct result *find_sfx(const struct sink *s, const char *bench, const char *sfx,
				     unsigned nodes)
{
	return find_round(s, bench, sfx, "", nodes);
}

static void fmt(char *buf, size_t len, double v, int prec)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.*f", prec, v);
}

static void print_table(const struct sink *s)
{
	printf("%-28s %5s %6s %7s %7s %7s %7s %7s %7s %8s %7s %7s  %s\n", "figure", "nodes", "n",
	       "p50", "p90", "p99", "max", "mean", "msgs/op", "bytes/op", "wake/op", "svcCPU",
	       "other");
	for (size_t i = 0; i < s->n; i++) {
		const struct result *r = &s->r[i];
		char c[9][24], other[200];
		size_t off = 0;

		if (!strcmp(r->bench, "hot_page") || strchr(r->bench, '#'))
			continue; /* print_hot(), print_rounds() */
		fmt(c[0], sizeof(c[0]), r->p50, 1);
		fmt(c[1], sizeof(c[1]), r->p90, 1);
		fmt(c[2], sizeof(c[2]), r->p99, 1);
		fmt(c[3], sizeof(c[3]), r->max, 0);
		fmt(c[4], sizeof(c[4]), r->mean, 1);
		fmt(c[5], sizeof(c[5]), r->msgs_per_op, 2);
		fmt(c[6], sizeof(c[6]), r->bytes_per_op, 0);
		fmt(c[7], sizeof(c[7]), r->wakeups_per_op, 2);
		fmt(c[8], sizeof(c[8]), r->svc_cpu_us_per_op, 1);
		other[0] = '\0';
		if (!isnan(r->mb_s))
			off += (size_t)snprintf(other + off, sizeof(other) - off, "%.0f MB/s; ",
						r->mb_s);
		if (!isnan(r->ops_s))
			off += (size_t)snprintf(other + off, sizeof(other) - off, "%.0f ops/s; ",
						r->ops_s);
		if (!isnan(r->zero_frac))
			off += (size_t)snprintf(other + off, sizeof(other) - off,
						"%.0f%% zero pages; ", 100 * r->zero_frac);
		if (!isnan(r->xfers_per_op))
			off += (size_t)snprintf(other + off, sizeof(other) - off,
						"%.4f transfers/op; ", r->xfers_per_op);
		if (!isnan(r->install_us_per_op))
			off += (size_t)snprintf(other + off, sizeof(other) - off,
						"installing %.2f us/op; ", r->install_us_per_op);
		snprintf(other + off, sizeof(other) - off, "%s", r->note);
		off = strlen(other);
		while (off && (other[off - 1] == ' ' || other[off - 1] == ';'))
			other[--off] = '\0';
		printf("%-28s %5u %6llu %7s %7s %7s %7s %7s %7s %8s %7s %7s%s%s\n", r->bench,
		       r->nodes, (unsigned long long)r->n, c[0], c[1], c[2], c[3], c[4], c[5], c[6],
		       c[7], c[8], off ? "  " : "", other);
	}
}

/*
 * The library's own latency histograms (udsm_stats2) for the figures above, from node 0:
 * what its service thread measured from reading each fault to waking the thread, next to
 * what the application measured around the access. The difference is the kernel's fault
 * delivery and the woken thread's scheduling.
 */
static void print_lib(const struct sink *s)
{
	bool any = false;

	for (size_t i = 0; i < s->n; i++) {
		const struct result *r = &s->r[i];

		if (!r->lib_kind[0] || !r->lib_n || strchr(r->bench, '#'))
			continue;
		if (!any)
			printf("\nlibrary-side latency on node 0 (udsm_stats2: service thread, "
			       "fault read -> waiter woken), us; histogram: [lo,hi) count\n"
			       "%-28s %5s %-10s %7s %7s %7s %7s  %s\n", "figure", "nodes", "kind",
			       "n", "p50", "p99", "mean", "app p50");
		any = true;
		printf("%-28s %5u %-10s %7llu %7.1f %7.1f %7.1f %7.1f ", r->bench, r->nodes,
		       r->lib_kind, (unsigned long long)r->lib_n, r->lib_p50, r->lib_p99,
		       r->lib_mean, r->p50);
		for (unsigned b = 0; b < UDSM_LAT_BUCKETS; b++)
			if (r->lib_buckets[b])
				printf(" [%llu,%llu):%llu", b ? 1ull << (b - 1) : 0ull, 1ull << b,
				       (unsigned long long)r->lib_buckets[b]);
		printf("\n");
	}
}

/* The suffix of round @k's figures ("#2", ...; round 1 has none). */
struct round_tag {
	char s[12];
};

static struct round_tag round_tag(unsigned k)
{
	struct round_tag t;

	snprintf(t.s, sizeof(t.s), "#%u", k);
	return t;
}

/* The extra rounds of the 2-node latency targets (--rounds): each round's p50s, round 1 being
 * the table above. */
static void print_rounds(const struct sink *s, unsigned rounds)
{
	static const char *const figs[] = {
		"floor_tcp_4k", "floor_tcp_16", "floor_uffd", "floor_tcp_4k_sleep",
		"floor_tcp_16_sleep", "floor_uffd_sleep", "read_miss_home_remote",
		"read_miss_home_local", "upgrade1_home_remote", "upgrade1_home_local", "pingpong",
	};
	bool any = false;

	for (unsigned k = 2; k <= rounds; k++) {
		struct round_tag rs = round_tag(k);
		bool line = false;

		for (size_t i = 0; i < sizeof(figs) / sizeof(figs[0]); i++) {
			const struct result *r = find_round(s, figs[i], "", rs.s, 0);

			if (!r)
				continue;
			if (!any)
				printf("\nmore rounds of the 2-node latency targets, each a cluster of its "
				       "own, floors first (p50, us; round 1 is the table above):\n");
			if (!line)
				printf("  round %u:", k);
			printf("%s %s %.1f", line ? "," : "", figs[i], r->p50);
			any = line = true;
		}
		if (line)
			printf("\n");
	}
}

/* Node 0's hottest pages after the false-sharing workload (udsm_hot_pages()). */
static void print_hot(const struct sink *s)
{
	bool any = false;

	for (size_t i = 0; i < s->n; i++) {
		const struct result *r = &s->r[i];

		if (strcmp(r->bench, "hot_page"))
			continue;
		if (!any)
			printf("\nhot pages homed on node 0 after the false-sharing workload "
			       "(udsm_hot_pages()):\n");
		any = true;
		printf("  page %llu: %llu transfers, nodes", (unsigned long long)r->hot_page,
		       (unsigned long long)r->n);
		for (unsigned k = 0; k < 64; k++)
			if (r->hot_nodes & (1ull << k))
				printf(" %u", k);
		if (r->hot_fs)
			printf("; FALSE SHARING");
		if (r->hot_disjoint || r->hot_overlap)
			printf(" (%u disjoint / %u overlapping writer hand-overs; node:start-end "
			       "written: %s)", r->hot_disjoint, r->hot_overlap, r->hot_ranges);
		if (r->note[0])
			printf("; %s", r->note);
		printf("\n");
	}
}

static void json_num(const char *key, double v, bool comma)
{
	if (isnan(v) || isinf(v))
		printf("\"%s\":null%s", key, comma ? "," : "");
	else
		printf("\"%s\":%.4g%s", key, v, comma ? "," : "");
}

static void json_str(const char *key, const char *v, bool comma)
{
	printf("\"%s\":\"", key);
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	printf("\"%s", comma ? "," : "");
}

static void print_json(const struct result *r)
{
	printf("{");
	json_str("bench", r->bench, true);
	printf("\"nodes\":%u,\"n\":%llu,", r->nodes, (unsigned long long)r->n);
	json_num("p50_us", r->p50, true);
	json_num("p90_us", r->p90, true);
	json_num("p99_us", r->p99, true);
	json_num("max_us", r->max, true);
	json_num("mean_us", r->mean, true);
	json_num("msgs_per_op", r->msgs_per_op, true);
	json_num("bytes_per_op", r->bytes_per_op, true);
	json_num("wakeups_per_op", r->wakeups_per_op, true);
	json_num("mb_s", r->mb_s, true);
	json_num("ops_s", r->ops_s, true);
	json_num("zero_frac", r->zero_frac, true);
	json_num("xfers_per_op", r->xfers_per_op, true);
	json_num("svc_cpu_us_per_op", r->svc_cpu_us_per_op, true);
	json_num("app_cpu_us_per_op", r->app_cpu_us_per_op, true);
	json_num("install_us_per_op", r->install_us_per_op, true);
	json_num("svc0_cpu_us_per_op", r->svc0_cpu_us_per_op, true);
	json_num("svc1_cpu_us_per_op", r->svc1_cpu_us_per_op, true);
	if (r->lib_kind[0]) {
		bool first = true;

		json_str("lib_kind", r->lib_kind, true);
		printf("\"lib_n\":%llu,", (unsigned long long)r->lib_n);
		json_num("lib_p50_us", r->lib_p50, true);
		json_num("lib_p99_us", r->lib_p99, true);
		json_num("lib_mean_us", r->lib_mean, true);
		printf("\"lib_buckets_us\":[");
		for (unsigned b = 0; b < UDSM_LAT_BUCKETS; b++) {
			if (!r->lib_buckets[b])
				continue;
			printf("%s[%llu,%llu,%llu]", first ? "" : ",", b ? 1ull << (b - 1) : 0ull,
			       1ull << b, (unsigned long long)r->lib_buckets[b]);
			first = false;
		}
		printf("],");
	}
	if (!strcmp(r->bench, "hot_page")) {
		printf("\"page\":%llu,\"transfers\":%llu,\"false_sharing\":%s,\"disjoint\":%u,"
		       "\"overlap\":%u,\"node_mask\":%llu,\"writer_mask\":%llu,",
		       (unsigned long long)r->hot_page, (unsigned long long)r->n,
		       r->hot_fs ? "true" : "false", r->hot_disjoint, r->hot_overlap,
		       (unsigned long long)r->hot_nodes, (unsigned long long)r->hot_writers);
		json_str("ranges", r->hot_ranges, true);
	}
	printf("\"spin_us\":%d,", r->spin_us);
	json_str("placement", r->placement, true);
	json_str("note", r->note, false);
	printf("}\n");
}

struct ratio {
	char name[48];
	char formula[320];
	char warn[160];
	double value, target;
	double round[MAX_ROUNDS]; /* the same-run ratio of each round (a latency target) */
	unsigned nround;
	bool le;  /* value <= target passes (else >=) */
	bool have;
	bool sub; /* a forced regime, shown under the default's line */
};

/* Latency targets: figure p50 <= target x (f1 + f2) of the same run. */
#define THIRD_TARGET 1.2	    /* 3-node third-party miss / 2-node miss */
#define BARRIER8_TARGET_US 150.0 /* 8-node barrier, p50 */
#define SCAN_TARGET_MB_S 1500.0 /* MB/s, 10^6 B/s */

static const struct {
	const char *fig, *f1, *f2;
	double target;
} lat_targets[] = {
	{ "read_miss_home_remote", "floor_tcp_4k", "floor_uffd", 1.5 },
	{ "read_miss_home_local", "floor_tcp_4k", "floor_uffd", 1.5 },
	{ "upgrade1_home_remote", "floor_tcp_16", "floor_uffd", 1.5 },
	{ "upgrade1_home_local", "floor_tcp_16", "floor_uffd", 1.5 },
	{ "upgrade3_home_remote", "floor_tcp_16", "floor_uffd", 1.5 },
	{ "upgrade3_home_local", "floor_tcp_16", "floor_uffd", 1.5 },
	{ "pingpong", "floor_tcp_4k", "floor_uffd", 2.0 },
};

/* The sum of two floors' p50 in one regime ("" polling, "_sleep" sleeping) of round @rs; NaN
 * if absent. */
static double floor_sum_round(const struct sink *s, const char *f1, const char *f2,
			      const char *sfx, const char *rs)
{
	const struct result *a = find_round(s, f1, sfx, rs, 0), *b = find_round(s, f2, sfx, rs, 0);

	return a && b ? a->p50 + b->p50 : NAN;
}

static double floor_sum(const struct sink *s, const char *f1, const char *f2, const char *sfx)
{
	return floor_sum_round(s, f1, f2, sfx, "");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, unsigned n)
{
	double t[MAX_ROUNDS];

	memcpy(t, v, n * sizeof(*v));
	qsort(t, n, sizeof(*t), cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static struct ratio *ratio_new(struct ratio *q, const char *name, const char *sfx, double target,
			       bool le)
{
	memset(q, 0, sizeof(*q));
	snprintf(q->name, sizeof(q->name), "%s%s", name, sfx);
	q->target = target;
	q->le = le;
	q->sub = sfx[0] != '\0';
	return q;
}

/*
 * One round's ratio of latency target @i in the run's own configuration: the figure against
 * the floor of the regime it ran in (for the library's automatic mode, the better of the two
 * floors: the strictest comparison), both of round @rs. NaN if the round lacks either.
 */
static double round_ratio(const struct sink *s, int spin_us, int i, const char *rs,
			  const struct result **fig, double *fp, double *fs, bool *poll)
{
	const char *f1 = lat_targets[i].f1, *f2 = lat_targets[i].f2;

	*fp = floor_sum_round(s, f1, f2, "", rs);
	*fs = floor_sum_round(s, f1, f2, "_sleep", rs);
	*fig = find_round(s, lat_targets[i].fig, "", rs, 0);
	*poll = spin_us > 0 || (spin_us == 0 && *fp <= *fs);
	if (!*fig || isnan(*fp) || isnan(*fs))
		return NAN;
	return (*fig)->p50 / (*poll ? *fp : *fs);
}

/*
 * One latency target: the run's own configuration against the floor of its regime, in every
 * round measured; its value is the median of the rounds' ratios. Then the same figure of the
 * first round with each waiting mode forced, against the floor of that mode.
 */
static size_t ratio_lat(struct ratio *q, const struct sink *s, int spin_us, int i,
			unsigned rounds)
{
	const char *fig = lat_targets[i].fig, *f1 = lat_targets[i].f1, *f2 = lat_targets[i].f2;
	const struct result *a;
	double fp, fs;
	bool poll;
	double v = round_ratio(s, spin_us, i, "", &a, &fp, &fs, &poll);
	size_t n = 0;

	if (!isnan(v)) {
		double fl = poll ? fp : fs;
		const char *rg = spin_us > 0 ? "polling" : spin_us < 0 ? "sleeping"
					  : poll ? "best (polling)" : "best (sleeping)";
		struct ratio *r = ratio_new(&q[n], fig, "", lat_targets[i].target, true);
		size_t off;

		r->round[r->nround++] = v;
		for (unsigned k = 2; k <= rounds; k++) {
			const struct result *b;
			double bp, bs, w;
			bool bpoll;

			w = round_ratio(s, spin_us, i, round_tag(k).s, &b, &bp, &bs, &bpoll);
			if (!isnan(w))
				r->round[r->nround++] = w;
		}
		r->value = median(r->round, r->nround);
		r->have = true;
		off = (size_t)snprintf(r->formula, sizeof(r->formula),
				       "%s%s p50 %.1f / %s floor %.1f (%s%s + %s%s; polling %.1f, "
				       "sleeping %.1f); wake/op %.2f", r->nround > 1 ? "round 1: " : "",
				       fig, a->p50, rg, fl, f1,
				       poll ? "" : "_sleep", f2, poll ? "" : "_sleep", fp, fs,
				       a->wakeups_per_op);
		if (r->nround > 1 && off < sizeof(r->formula)) {
			off += (size_t)snprintf(r->formula + off, sizeof(r->formula) - off,
						"; median of %u rounds:", r->nround);
			for (unsigned k = 0; k < r->nround && off < sizeof(r->formula); k++)
				off += (size_t)snprintf(r->formula + off, sizeof(r->formula) - off,
							" %.2f", r->round[k]);
		}
		n++;
	}
	for (int r = 0; r < 2; r++) {
		const char *sfx = r ? "@sleep" : "@poll";
		const struct result *b = find_sfx(s, fig, sfx, 0);
		double fl = r ? fs : fp;

		if (!b || isnan(fl))
			continue;
		ratio_new(&q[n], fig, sfx, lat_targets[i].target, true);
		q[n].value = b->p50 / fl;
		q[n].have = true;
		snprintf(q[n].formula, sizeof(q[n].formula),
			 "%s%s p50 %.1f / %s floor %.1f; wake/op %.2f", fig, sfx, b->p50,
			 r ? "sleeping" : "polling", fl, b->wakeups_per_op);
		n++;
	}
	return n;
}

static size_t ratios(const struct sink *s, struct ratio *q, size_t ps, int spin_us,
		     unsigned rounds)
{
	size_t n = 0;
	const struct result *r, *b;

	for (size_t i = 0; i < sizeof(lat_targets) / sizeof(lat_targets[0]); i++)
		n += ratio_lat(&q[n], s, spin_us, (int)i, rounds);
	/* A miss whose home is neither the requester nor the owner, against a 2-node miss. */
	if ((r = find(s, "read_miss_home_third", 3)) && (b = find(s, "read_miss_home_remote", 2))) {
		ratio_new(&q[n], "read_miss_home_third", "", THIRD_TARGET, true);
		q[n].value = r->p50 / b->p50;
		q[n].have = true;
		snprintf(q[n].formula, sizeof(q[n].formula),
			 "read_miss_home_third p50 %.1f (3 nodes) / read_miss_home_remote p50 %.1f "
			 "(2 nodes); %.2f msgs/op", r->p50, b->p50, r->msgs_per_op);
		n++;
	}
	/* Barriers: an absolute target at 8 nodes, in each regime measured. */
	for (int k = 0; k < 3; k++) {
		const char *sfx = k == 0 ? "" : k == 1 ? "@poll" : "@sleep";

		if (!(r = find_sfx(s, "barrier", sfx, 8)))
			continue;
		ratio_new(&q[n], "barrier_8", sfx, BARRIER8_TARGET_US, true);
		q[n].value = r->p50;
		q[n].have = true;
		snprintf(q[n].formula, sizeof(q[n].formula),
			 "barrier%s p50 at 8 nodes, us; wake/op %.2f", sfx, r->wakeups_per_op);
		n++;
	}
	if ((r = find(s, "scan", 0))) {
		ratio_new(&q[n], "scan", "", SCAN_TARGET_MB_S, false);
		snprintf(q[n].formula, sizeof(q[n].formula), "scan MB/s (10^6 B/s)");
		q[n].value = r->mb_s;
		q[n].have = true;
		n++;
	}
	for (int h = 0; h < 2; h++) {
		const char *nm = h ? "zero_read_home_remote" : "zero_read_home_local";

		if (!(r = find(s, nm, 0)))
			continue;
		ratio_new(&q[n], nm, "", (double)ps, true);
		/* Pass: every page came as "zero" and less than a page moved per miss. */
		q[n].value = r->zero_frac >= 1.0 && r->bytes_per_op < (double)ps ? r->bytes_per_op
										  : NAN;
		snprintf(q[n].formula, sizeof(q[n].formula),
			 "%s: %.0f%% zero pages, %.1f bytes/miss on the wire (page %zu)", nm,
			 100 * r->zero_frac, r->bytes_per_op, ps);
		q[n].have = true;
		n++;
	}
	return n;
}

static bool ratio_pass(const struct ratio *q)
{
	if (!q->have || isnan(q->value))
		return false;
	return q->le ? q->value <= q->target : q->value >= q->target;
}

static double p50_of(const struct sink *s, const char *bench)
{
	const struct result *r = find(s, bench, 0);

	return r ? r->p50 : NAN;
}

/*
 * What the group floors (group.c) say about the targets whose costs are the machine's: the
 * floor of a target with the operation it cannot do without added (an upgrade's drop at the
 * sharer), the raw 3-process relay against the raw 2-process round trip, and the raw 8-process
 * barrier. "out of reach" means that even the raw operations, with no DSM, miss the target.
 */
static void machine_bounds(const struct sink *s)
{
	double rv = p50_of(s, "floor_revoke"), rvb = p50_of(s, "floor_revoke_busy");
	double fp = floor_sum(s, "floor_tcp_16", "floor_uffd", "");
	double fs = floor_sum(s, "floor_tcp_16", "floor_uffd", "_sleep");
	double up = NAN;

	for (size_t i = 0; i < sizeof(lat_targets) / sizeof(lat_targets[0]); i++)
		if (!strcmp(lat_targets[i].fig, "upgrade1_home_remote"))
			up = lat_targets[i].target;
	if (!isnan(rv) && !isnan(rvb) && !isnan(fp) && !isnan(fs) && !isnan(up)) {
		double lo = fmin(fp + rvb, fs + rv), fl = fmin(fp, fs); /* ratio_lat()'s floor */

		printf("  (info) upgrade: the sharer's drop costs %.1f us with the other CPUs idle "
		       "(floor_revoke), %.1f with them busy (floor_revoke_busy); the upgrade floor "
		       "with it: polling %.1f + %.1f, sleeping %.1f + %.1f; the better, %.1f, is "
		       "%.2fx the target's floor %.1f: %s on this machine\n", rv, rvb, fp, rvb,
		       fs, rv, lo, lo / fl, fl, lo / fl > up ? "out of reach" : "within reach");
	}
	double gu = p50_of(s, "floor_giveup"), gub = p50_of(s, "floor_giveup_busy");
	double tk = p50_of(s, "floor_take"), tkb = p50_of(s, "floor_take_busy");

	if (!isnan(gu) && !isnan(gub) && !isnan(tk) && !isnan(tkb))
		printf("  (info) an owner giving up a page it wrote (every write miss and ping-pong "
		       "transfer): write-protect, read and drop %.1f us with the other CPUs idle, "
		       "%.1f busy (floor_giveup); one UFFDIO_MOVE, what udsm does, %.1f and %.1f "
		       "(floor_take)\n", gu, gub, tk, tkb);
	else if (!isnan(gu) && !isnan(gub))
		printf("  (info) an owner giving up a page it wrote: write-protect, read and drop "
		       "%.1f us with the other CPUs idle, %.1f busy (floor_giveup); this kernel has "
		       "no UFFDIO_MOVE (Linux 6.8), which does it in one step\n", gu, gub);
	double sg = p50_of(s, "floor_fault_tcp_sigbus");
	double sgs = p50_of(s, "floor_fault_tcp_sigbus_sleep");
	double ft = p50_of(s, "floor_fault_tcp"), fts = p50_of(s, "floor_fault_tcp_sleep");

	if (!isnan(sg) && !isnan(sgs) && !isnan(ft) && !isnan(fts))
		printf("  (info) a fault resolved in the faulting thread (UFFD_FEATURE_SIGBUS, no "
		       "hand-off to a service thread): floor_fault_tcp_sigbus / floor_fault_tcp = "
		       "%.1f / %.1f = %.2f polling, %.1f / %.1f = %.2f sleeping\n", sg, ft, sg / ft,
		       sgs, fts, sgs / fts);
	double r2 = p50_of(s, "floor_relay2"), r3 = p50_of(s, "floor_relay3");
	double r2s = p50_of(s, "floor_relay2_sleep"), r3s = p50_of(s, "floor_relay3_sleep");

	if (!isnan(r2) && !isnan(r3) && !isnan(r2s) && !isnan(r3s)) {
		double best = fmin(r3, r3s) / fmin(r2, r2s);

		printf("  (info) third-party miss: raw TCP, processes placed as in the 3- and "
		       "2-node clusters: floor_relay3 / floor_relay2 = %.1f / %.1f = %.2f polling, %.1f / "
		       "%.1f = %.2f sleeping, best / best %.2f: the %g target is %s on this "
		       "machine\n", r3, r2, r3 / r2, r3s, r2s, r3s / r2s, best, THIRD_TARGET,
		       best > THIRD_TARGET ? "out of reach" : "within reach");
	}
	double f4 = p50_of(s, "floor_fanout4"), f4s = p50_of(s, "floor_fanout4_sleep");
	double t16 = p50_of(s, "floor_tcp_16"), t16s = p50_of(s, "floor_tcp_16_sleep");
	double fu = p50_of(s, "floor_uffd"), fus = p50_of(s, "floor_uffd_sleep");
	const struct result *u3 = find(s, "upgrade3_home_local", 0);

	if (!isnan(f4) && !isnan(f4s) && !isnan(t16) && !isnan(t16s) && !isnan(fu) &&
	    !isnan(fus) && u3) {
		double best = fmin(f4 + fu, f4s + fus);

		printf("  (info) upgrade, 3 sharers: raw TCP, 4 processes placed as in the 4-node "
		       "cluster, 16 B to 3 and back: floor_fanout4 / floor_tcp_16 = %.1f / %.1f = "
		       "%.2f polling, %.1f / %.1f = %.2f sleeping; upgrade3_home_local p50 %.1f is "
		       "%.2fx the better of floor_fanout4 + floor_uffd (%.1f)\n", f4, t16, f4 / t16,
		       f4s, t16s, f4s / t16s, u3->p50, u3->p50 / best, best);
	}
	double bc = p50_of(s, "floor_barrier8_central"), bd = p50_of(s, "floor_barrier8_dissem");
	double bcs = p50_of(s, "floor_barrier8_central_sleep");
	double bds = p50_of(s, "floor_barrier8_dissem_sleep");
	double bb = p50_of(s, "floor_barrier8_batch"), bbs = p50_of(s, "floor_barrier8_batch_sleep");
	const struct result *b8 = find(s, "barrier", 8);

	if (!isnan(bc) && (isnan(bb) || isnan(bbs)))
		printf("  (info) floor_barrier8_batch left out: no io_uring here (the library then "
		       "sends to each peer in turn)\n");
	if (!isnan(bc) && !isnan(bd) && !isnan(bcs) && !isnan(bds)) {
		/* fmin() ignores a NaN: the batched barrier's, without io_uring. */
		double best = fmin(fmin(fmin(bc, bd), fmin(bcs, bds)), fmin(bb, bbs));

		printf("  (info) barrier, 8 nodes: raw TCP 8-process barriers, central %.1f polling "
		       "/ %.1f sleeping, central with its releases in one system call %.1f / %.1f, "
		       "dissemination %.1f / %.1f; the best, %.1f, is %s the %g us target", bc, bcs,
		       bb, bbs, bd, bds, best, best > BARRIER8_TARGET_US ? "above" : "within",
		       BARRIER8_TARGET_US);
		if (b8)
			printf("; udsm's %.1f is %.2fx it", b8->p50, b8->p50 / best);
		printf("\n");
	}
}

static char load0[64] = "?", load1[64] = "?";

static void read_load(char *buf, size_t len)
{
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		char v[64];

		if (fscanf(f, "%63s", v) == 1)
			snprintf(buf, len, "%s", v);
		fclose(f);
	}
}

static void report(const struct cli *c, const struct sink *s, const unsigned *sizes,
		   size_t nsizes, const struct params *p)
{
	struct utsname u;
	struct ratio q[48];
	size_t nq, ps = (size_t)sysconf(_SC_PAGESIZE);
	int cpus[MAX_CPUS], ncpu = allowed_cpus(cpus, MAX_CPUS);
	const struct result *fl = find(s, "floor_fault_tcp", 0);

	uname(&u);
	printf("udsm-bench: kernel %s, %d CPUs, page %zu B, load average at start %s; "
	       "spin_us=%d%s; read-ahead %d%s; %u samples per latency figure%s",
	       u.release, ncpu, ps, load0, c->spin_us,
	       c->spin_us == 0 ? " (automatic: the library's default)"
	       : c->spin_us < 0 ? " (never poll)" : " (poll after every event)",
	       c->readahead, c->readahead ? "" : " (library default)", p->iters,
	       c->quick ? " (--quick)" : "");
	printf("; hold_us %d%s", c->hold_us, c->hold_us ? "" : " (library default)");
	printf("; %u round%s of the 2-node latency targets", c->rounds, c->rounds > 1 ? "s" : "");
	if (c->svc_nice)
		printf("; service threads at nice %d", c->svc_nice);
	printf("\n");
	printf("placement (n<node>:<app CPU>/<service CPU>):");
	for (size_t i = 0; i < nsizes; i++) {
		for (size_t j = 0; j < s->n; j++) {
			if (s->r[j].nodes == sizes[i]) {
				printf(" [%u nodes] %s;", sizes[i], s->r[j].placement);
				break;
			}
		}
	}
	printf("\nall times in microseconds; msgs/op and bytes/op on the wire summed over all "
	       "nodes;\nwake/op: service-thread sleeps ended per op (floors: the waiting thread's); "
	       "svcCPU: CPU us per op of all service threads, spinning included\n\n");
	print_table(s);
	print_lib(s);
	print_hot(s);
	print_rounds(s, c->rounds);

	nq = ratios(s, q, ps, c->spin_us, c->rounds);
	printf("\ntargets (same run; the first line of each is the run's own configuration%s, the "
	       "indented ones the same figure with the waiting mode forced, against the floor of "
	       "that mode):\n", c->spin_us == 0 ? ", the library's automatic mode, against the "
	       "better floor" : "");
	size_t npass = 0, nmain = 0;

	for (size_t i = 0; i < nq; i++) {
		if (!q[i].have)
			continue;
		printf("  %s%-*s %8.2f  %s %-6g %-4s  %s\n", q[i].sub ? "  " : "",
		       q[i].sub ? 26 : 28, q[i].name, q[i].value, q[i].le ? "<=" : ">=",
		       q[i].target, ratio_pass(&q[i]) ? "PASS" : "MISS", q[i].formula);
		if (q[i].warn[0])
			printf("  %-28s (!) %s\n", "", q[i].warn);
		if (!q[i].sub) {
			nmain++;
			npass += ratio_pass(&q[i]);
		}
	}
	{
		const struct result *sc = find(s, "scan", 0), *st = find(s, "floor_tcp_stream", 0);

		if (sc && st && st->mb_s > 0)
			printf("  (info) scan %.0f MB/s / floor_tcp_stream %.0f MB/s = %.2f: the scan "
			       "against one raw TCP stream between the same processes, same run\n",
			       sc->mb_s, st->mb_s, sc->mb_s / st->mb_s);
		const struct result *po = find(s, "floor_page_ops", 0);

		if (sc && st && po && st->mb_s > 0 && sc->mb_s > 0)
			printf("  (info) scan: %.2f us per page; its floors per page: %.2f us of "
			       "page-table work (UFFDIO_COPY at the reader, write-protect and read at "
			       "the owner) + %.2f us on one TCP stream\n",
			       (double)ps / sc->mb_s, po->mean, (double)ps / st->mb_s);
		const struct result *nm = find(s, "floor_new_memory", 0);

		if (sc && sc->mb_s > 0 && !isnan(sc->install_us_per_op))
			printf("  (info) scan: %.2f us per page, of which the reader's service thread "
			       "spent %.2f in UFFDIO_COPY (%.0f%%): the kernel allocates every page it "
			       "installs, so new memory costs the scan that much here\n",
			       (double)ps / sc->mb_s, sc->install_us_per_op,
			       100.0 * sc->install_us_per_op / ((double)ps / sc->mb_s));
		if (sc && sc->mb_s > 0 && !isnan(sc->svc0_cpu_us_per_op) &&
		    !isnan(sc->svc1_cpu_us_per_op) && !isnan(sc->app_cpu_us_per_op))
			printf("  (info) scan: CPU per page (polling included), of the %.2f us a page "
			       "took: the reader's service thread %.2f and application thread %.2f "
			       "(%.0f%% of one CPU together), the owner's service thread %.2f (%.0f%%)"
			       "\n", (double)ps / sc->mb_s, sc->svc0_cpu_us_per_op,
			       sc->app_cpu_us_per_op,
			       100.0 * (sc->svc0_cpu_us_per_op + sc->app_cpu_us_per_op) /
				       ((double)ps / sc->mb_s),
			       sc->svc1_cpu_us_per_op,
			       100.0 * sc->svc1_cpu_us_per_op / ((double)ps / sc->mb_s));
		if (sc && nm && nm->mb_s > 0 && sc->mb_s > 0)
			printf("  (info) floor_new_memory %.0f MB/s (%.2f us per page): UFFDIO_COPY "
			       "alone into as much memory as the scan, never used before, right after "
			       "it; the kernel's free pages differ from one moment to the next, so "
			       "this is what new memory can cost here, not what the scan paid\n",
			       nm->mb_s, nm->mean);
		const struct result *fr = find(s, "floor_first_read", 0);
		const struct result *pr = find(s, "floor_page_read", 0);

		if (sc && fr && sc->mb_s > 0 && !isnan(sc->install_us_per_op)) {
			/* Per page, what the reader's CPU cannot avoid: installing it, as the scan
			 * paid for it, its first load, and where this run measured them, taking it
			 * off a TCP stream (the receiving thread's CPU in floor_tcp_stream) and the
			 * scan's own reading of its words; the target's time per page. */
			bool rx = st && !isnan(st->mean) && st->mean > 0;
			bool rd = pr && !isnan(pr->mean);
			double need = sc->install_us_per_op + fr->mean + (rx ? st->mean : 0) +
				      (rd ? pr->mean : 0);
			double tgt = (double)ps / SCAN_TARGET_MB_S;
			int app = -1, svc = -2;
			bool one = sscanf(sc->placement, "n0:%d/%d", &app, &svc) == 2 && app >= 0 &&
				   app == svc;
			char more[160] = "";
			size_t k = 0;

			if (rx)
				k += (size_t)snprintf(more, sizeof(more), ", receiving it from TCP, %.2f "
						      "(floor_tcp_stream's receiver)", st->mean);
			if (rd)
				snprintf(more + k, sizeof(more) - k, ", reading its words, %.2f "
					 "(floor_page_read)", pr->mean);
			printf("  (info) scan: the reader pays per page at least its UFFDIO_COPY as "
			       "the scan paid it, %.2f, the first load from the page, %.2f "
			       "(floor_first_read; on a PVM guest the hypervisor maps each new page on "
			       "first use)%s: %.2f us in all; %.0f MB/s is %.2f us per page: %s\n",
			       sc->install_us_per_op, fr->mean, more, need, SCAN_TARGET_MB_S, tgt,
			       !one ? "the reader's two threads are not pinned to one CPU here, so no bound"
			       : need >= tgt ? "with both its threads on one CPU here, out of reach "
					       "on this machine in this run"
			       : "within reach with both its threads on one CPU; the rest is udsm's "
				 "own work");
		}
	}
	for (int k = 0; k < 2 && fl; k++) {
		const struct result *rm = find(s, k ? "read_miss_home_remote@sleep"
						    : c->spin_us == 0 ? "read_miss_home_remote@poll"
						    : "read_miss_home_remote", 0);
		const struct result *f = find(s, k ? "floor_fault_tcp_sleep" : "floor_fault_tcp", 0);

		const struct result *w = find(s, k ? "floor_fault_tcp_wp_sleep" : "floor_fault_tcp_wp",
					      0);

		if (rm && f)
			printf("  (info) %s p50 / %s p50 = %.2f: udsm over the smallest remote fault "
			       "the same machine can do, same regime\n", rm->bench, f->bench,
			       rm->p50 / f->p50);
		if (rm && w)
			printf("  (info) %s p50 / %s p50 = %.2f: the same with the owner's page-table "
			       "change (one UFFDIO_WRITEPROTECT before the answer) in the floor\n",
			       rm->bench, w->bench, rm->p50 / w->p50);
	}
	for (int k = 0; k < 2 && fl; k++) {
		const struct result *up = find(s, k ? "upgrade1_home_remote@sleep"
						    : c->spin_us == 0 ? "upgrade1_home_remote@poll"
						    : "upgrade1_home_remote", 0);
		const struct result *f = find(s, k ? "floor_fault_tcp_up_sleep" : "floor_fault_tcp_up",
					      0);
		/*
		 * The sharer drops its copy while the requester waits: polling, the requester's
		 * CPU is busy, and on a paravirtualised guest a page-table change then costs what
		 * floor_revoke_busy measures (18 us against 5 idle on the PVM guest of
		 * docs/PERFORMANCE.md 3.12); sleeping, it is idle.
		 */
		const char *rvn = k ? "floor_revoke" : "floor_revoke_busy";
		const struct result *rv = find(s, rvn, 0);
		double drop = rv ? rv->p50 : 0.0;

		if (up && f)
			printf("  (info) %s p50 / %s p50 = %.2f: udsm's upgrade over the smallest "
			       "remote write-protect fault (16 B round trip, then UFFDIO_WRITEPROTECT "
			       "clears it), same regime; with the sharer's drop (%s %.1f) added to "
			       "the floor: %.2f\n", up->bench, f->bench, up->p50 / f->p50, rvn, drop,
			       up->p50 / (f->p50 + drop));
	}
	machine_bounds(s);
	read_load(load1, sizeof(load1));
	printf("\nverdict: %zu of %zu targets hold in the %s configuration on this machine "
	       "(load average %s at start, %s at the end)\n", npass, nmain,
	       c->spin_us == 0 ? "library's default" : "forced", load0, load1);
	if (!c->json)
		return;
	printf("\n");
	for (size_t i = 0; i < s->n; i++)
		print_json(&s->r[i]);
	for (size_t i = 0; i < nq; i++) {
		if (!q[i].have)
			continue;
		printf("{");
		json_str("bench", "ratio", true);
		json_str("name", q[i].name, true);
		json_num("value", q[i].value, true);
		json_num("target", q[i].target, true);
		json_str("cmp", q[i].le ? "<=" : ">=", true);
		printf("\"pass\":%s,", ratio_pass(&q[i]) ? "true" : "false");
		json_str("warning", q[i].warn, true);
		if (q[i].nround) {
			printf("\"rounds\":[");
			for (unsigned k = 0; k < q[i].nround; k++)
				printf("%s%.4f", k ? "," : "", q[i].round[k]);
			printf("],");
		}
		json_str("formula", q[i].formula, false);
		printf("}\n");
	}
}

/* ------------------------------------------------------------------------------------------
 * main.
 */

/* Can this process use userfaultfd at all? Exit status 77 (a skip for meson) if not. */
static bool uffd_usable(void)
{
	int fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		fd = (int)syscall(__NR_userfaultfd,
				  O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
	if (fd < 0)
		fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int main(int argc, char **argv)
{
	struct cli c;
	struct params p = { .magic = PARAMS_MAGIC, .version = BENCH_VERSION };
	struct sink s = { .fd = -1 };
	unsigned sizes[8];
	size_t nsizes = 0;
	uint64_t deadline;
	int failed = 0;

	parse_args(&c, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	read_load(load0, sizeof(load0));
	if (!uffd_usable()) {
		warnx_("userfaultfd is not available here (%s): nothing to measure", strerror(errno));
		return 77;
	}
	deadline = now_ns() + (uint64_t)c.timeout_s * 1000000000ull;

	p.iters = c.iters ? c.iters : (c.quick ? 100 : 2000);
	p.floor_iters = p.iters;
	p.pp_iters = p.iters;
	p.bar_iters = p.iters / 2 > 50 ? p.iters / 2 : 50;
	p.fs_ops = 5 * p.iters;
	p.scan_pages = ((c.scan_mb ? c.scan_mb : (c.quick ? 8 : 256)) << 20) /
		       (uint64_t)sysconf(_SC_PAGESIZE);
	p.spin_us = c.spin_us;
	p.readahead = c.readahead;
	p.progress = is_tty(2);

	if (c.join) {
		struct node_opts o = {
			.pins = c.npins ? c.pins : NULL, .npins = c.npins, .spin_us = c.spin_us,
			.readahead = c.readahead, .svc_nice = c.svc_nice, .hold_us = c.hold_us,
			.join = c.join,
			.port_fd = -1,
			.timeout_ms = (int)c.timeout_s * 1000,
		};

		return node_run(&o) ? 1 : 0;
	}
	if (c.listen) {
		struct node_opts o = {
			.p = &p, .pins = c.npins ? c.pins : NULL, .npins = c.npins,
			.nodes = c.max_nodes ? c.max_nodes : 2, .spin_us = c.spin_us,
			.readahead = c.readahead, .svc_nice = c.svc_nice, .hold_us = c.hold_us,
			.listen = c.listen,
			.port_fd = -1,
			.timeout_ms = (int)c.timeout_s * 1000, .sink = &s,
		};

		p.work = c.work;
		sizes[nsizes++] = o.nodes;
		if (node_run(&o))
			failed = 1;
	} else {
		unsigned max = c.max_nodes ? c.max_nodes : 8;
		static const unsigned want[] = { 2, 4, 8 };

		p.loopback = 1;
		if (c.work & W_FLOOR) {
			/* Before any cluster: the floors of groups of processes (group.c). */
			int cpu[UDSM_MAX_NODES];

			for (unsigned i = 0; i < c.npins; i++)
				cpu[i] = c.pins[i].app;
			if (group_floors(cpu, c.npins, c.spin_us > 0 ? c.spin_us : FLOOR_POLL_US,
					 p.floor_iters, &s))
				warnx_("the floors of groups of processes are incomplete; the DSM's "
				       "figures follow");
		}
		for (size_t i = 0; i < 3; i++)
			if (want[i] <= max)
				sizes[nsizes++] = want[i];
		if (max != sizes[nsizes - 1])
			sizes[nsizes++] = max;
		for (size_t i = 0; i < nsizes && !failed; i++) {
			p.work = c.work & W_BARRIER;
			if (i == 0)
				p.work = c.work & ~W_UPGRADE3;
			else if (sizes[i] >= 4 && !find(&s, "upgrade3_home_local", 0))
				p.work |= c.work & W_UPGRADE3;
			if (!p.work)
				continue;
			if (run_cluster(&c, sizes[i], &p, &s, deadline, c.spin_us, NULL, NULL))
				failed = 1;
			/* After the 2-node cluster: a miss whose home is a third node. */
			if (i == 0 && max >= 3 && (c.work & W_READ) && !failed) {
				p.work = W_READ;
				if (run_cluster(&c, 3, &p, &s, deadline, c.spin_us, NULL,
						"read_miss_home_third"))
					failed = 1;
			}
		}
		/*
		 * More rounds of the 2-node latency targets, each a cluster of its own that measures
		 * the targets' floors again just before its figures. One round's ratio is one moment
		 * of a shared machine: its floors and its figures are taken a second apart, and
		 * either can move (machine C, two back-to-back runs: floors 21.9 and 17.1 us, the
		 * read miss 28.5 and 30.9). A target's verdict is the median of the rounds' ratios.
		 */
		for (unsigned r = 2; r <= c.rounds && (c.work & W_FLOOR) && (c.work & ROUND_WORK) &&
				     !failed; r++) {
			struct round_tag rs = round_tag(r);

			p.work = W_FLOOR_RT | (c.work & ROUND_WORK);
			if (run_cluster(&c, 2, &p, &s, deadline, c.spin_us, rs.s, NULL))
				failed = 1;
		}
		/*
		 * The library chose its waiting mode itself: measure the latency figures again with
		 * each mode forced, so that the verdict shows both regimes next to the default.
		 */
		for (int r = 0; r < 2 && c.spin_us == 0 && !failed; r++) {
			int spin = r ? -1 : REGIME_POLL_US;
			const char *sfx = r ? "@sleep" : "@poll";

			p.work = c.work & (W_READ | W_UPGRADE1 | W_PINGPONG | W_BARRIER);
			if (p.work && run_cluster(&c, 2, &p, &s, deadline, spin, sfx, NULL))
				failed = 1;
			p.work = c.work & W_BARRIER;
			if (p.work && max >= 8 && !failed &&
			    run_cluster(&c, 8, &p, &s, deadline, spin, sfx, NULL))
				failed = 1;
		}
	}
	if (s.n)
		report(&c, &s, sizes, nsizes, &p);
	fflush(stdout);
	if (failed)
		warnx_("the run failed; the figures above (if any) are incomplete");
	free(s.r);
	return failed;
}
