/* SPDX-License-Identifier: MIT */
/*
 * api.c - the public functions of include/udsm.h: argument checks, defaults, life cycle.
 */
#define LOG_PREFIX ""
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "locks.h"
#include "core/place.h"
#include "node.h"
#include "os/env.h"
#include "os/log.h"
#include "tbarrier.h"

#define DEFAULT_SIZE (1u << 20)
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_READAHEAD 256
#define DEFAULT_HOLD_US 20
#define MAX_HOLD_US 10000u /* a hold also stalls everything after it on that link */
#define MAX_SIZE ((size_t)UDSM_REGION_MAX)
#define DEFAULT_PEER_BUFFER_MAX ((size_t)64 << 20)
#define MIN_PEER_BUFFER_MAX ((size_t)256 << 10)
#define DEFAULT_PEER_TIMEOUT_MS 10000
#define MIN_PEER_TIMEOUT_MS 1000

/*
 * Open nodes of this process, for the fork handler: a child must not keep their connections
 * alive (a peer would not notice the parent's death while the child lives). Locking: open_mu;
 * the prepare handler takes it across fork(), so the list is consistent in the child.
 */
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static struct udsm *open_nodes;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&open_mu);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&open_mu);
}

static void atfork_child(void)
{
	for (struct udsm *d = open_nodes; d; d = d->next_open)
		node_after_fork_child(d);
	open_nodes = NULL; /* the child's copies are abandoned, never freed */
	pthread_mutex_unlock(&open_mu);
}

static void atfork_register(void)
{
	if (pthread_atfork(atfork_prepare, atfork_parent, atfork_child))
		ulog(UDSM_LOG_WARN, "pthread_atfork failed: a child of fork() keeps the nodes' "
		     "connections open");
}

static void open_list_add(struct udsm *d)
{
	pthread_once(&atfork_once, atfork_register);
	pthread_mutex_lock(&open_mu);
	d->next_open = open_nodes;
	open_nodes = d;
	pthread_mutex_unlock(&open_mu);
}

static void open_list_del(struct udsm *d)
{
	pthread_mutex_lock(&open_mu);
	for (struct udsm **pp = &open_nodes; *pp; pp = &(*pp)->next_open)
		if (*pp == d) {
			*pp = d->next_open;
			break;
		}
	pthread_mutex_unlock(&open_mu);
}

static int env_int(const char *name, int dflt)
{
	const char *v = getenv(name);
	char *end;
	long x;

	if (!v || !*v)
		return dflt;
	errno = 0;
	x = strtol(v, &end, 10);
	if (*end || errno || x <= 0 || x > INT32_MAX) {
		ulog(UDSM_LOG_WARN, "ignoring %s=%s: not a positive number", name, v);
		return dflt;
	}
	return (int)x;
}

static void free_node(struct udsm *d)
{
	for (unsigned n = 0; n < UDSM_MAX_NODES; n++)
		node_peer_close(&d->peers[n]);
	lockd_destroy(d->lockd);
	tbar_destroy(d->tbar);
	eng_destroy(d->eng);
	alloc_destroy(d->alloc);
	stats_destroy(d->stats);
	free(d->run_buf);
	free(d->stage_buf);
	free(d->clean);
	free(d->rewrote);
	free(d->safe_buf);
	free(d->look_buf);
	if (d->memfd >= 0)
		close(d->memfd);
	if (d->epfd >= 0)
		close(d->epfd);
	if (d->evfd >= 0)
		close(d->evfd);
	if (d->lend_evfd >= 0)
		close(d->lend_evfd);
	if (d->lend_epfd >= 0)
		close(d->lend_epfd);
	uring_close(&d->ring);
	if (d->listen_fd >= 0)
		close(d->listen_fd);
	uffd_close(&d->uffd);
	/* After the close: unmapping a registered range waits for the reader of the unmap event,
	 * the service thread, which is gone. */
	if (d->scratch)
		munmap(d->scratch, scratch_len(d));
	if (d->base)
		munmap(d->base, d->size);
	pthread_mutex_destroy(&d->mu);
	pthread_mutex_destroy(&d->turn);
	pthread_cond_destroy(&d->cv);
	free(d);
}

static int alloc_barrier(void *arg)
{
	return node_barrier(arg);
}

static int alloc_rehome(void *arg, int step, uint64_t first, uint64_t count, int policy)
{
	return node_rehome(arg, step, first, count, policy);
}

static unsigned alloc_home(void *arg, uint64_t page)
{
	const struct udsm *d = arg;

	return eng_home(d->eng, page);
}

static bool alloc_died(void *arg, unsigned node)
{
	return lockd_died(arg, node);
}

/* The allocator's process-local state; it touches nothing of the region until it is used. */
static int udsm_alloc_init(struct udsm *d)
{
	struct alloc_env env = {
		.base = d->base, .npages = d->npages, .ps = d->ps, .self = d->self,
		.nodes = d->nodes, .barrier = alloc_barrier, .barrier_arg = d,
		.rehome = alloc_rehome, .home = alloc_home, .died = alloc_died, .place_arg = d,
		.home_chunk = d->home_chunk,
	};

	return alloc_create(&env, &d->alloc);
}

/*
 * The launch environment (src/os/env.h) fills what @cfg leaves zero: the cluster size, the
 * region size, the role (rank 0 listens, on UDSM_JOIN's address when given; a rank > 0
 * joins UDSM_JOIN), and the node id to ask for (the rank). @env keeps the strings @cfg then
 * points to. A rank that contradicts an explicit field is an error, not a guess.
 * A program that names an address itself (join, listen or listen_fd) forms its cluster its
 * own way: the environment is not consulted, so that such a program (s2dsm, the test
 * harnesses) behaves the same when it happens to run under mpirun or inside a Slurm step.
 */
static int env_defaults(struct udsm_config *cfg, struct env_launch *env, unsigned *want_id)
{
	int err;

	*want_id = WIRE_NODE_ANY;
	if (cfg->join || cfg->listen || cfg->listen_fd > 0)
		return 0;
	if ((err = env_launch_read(env, NULL)))
		return err;
	if (!cfg->size)
		cfg->size = env->size;
	if (env->nodes && cfg->nodes && cfg->nodes != env->nodes && env->has_rank) {
		ulog(UDSM_LOG_ERR, "the configuration asks for %u nodes but %s=%u", cfg->nodes,
		     env->nodes_var, env->nodes);
		return -EINVAL;
	}
	if (!cfg->nodes)
		cfg->nodes = env->nodes;
	if (!env->has_rank) {
		/* No rank: UDSM_JOIN alone makes a joiner with the next free id. */
		if (env->join[0])
			cfg->join = env->join;
		return 0;
	}
	if (env->rank == 0) {
		/* Listen where the others are told to find rank 0. */
		if (env->join[0])
			cfg->listen = env->join;
		return 0;
	}
	cfg->join = env->join;
	*want_id = env->rank;
	return 0;
}

/* Fill in defaults and check what can be checked before anything is created. */
static int udsm_check_config(struct udsm_config *cfg)
{
	long ps = sysconf(_SC_PAGESIZE);

	if (!cfg->nodes)
		cfg->nodes = 2;
	if (!cfg->size)
		cfg->size = DEFAULT_SIZE;
	if (!cfg->timeout_ms)
		cfg->timeout_ms = DEFAULT_TIMEOUT_MS;
	if (!cfg->join && (cfg->nodes < 1 || cfg->nodes > UDSM_MAX_NODES)) {
		ulog(UDSM_LOG_ERR, "a cluster has 1 to %d nodes, not %u", UDSM_MAX_NODES,
		     cfg->nodes);
		return -EINVAL;
	}
	if (!cfg->join && cfg->size > MAX_SIZE) {
		ulog(UDSM_LOG_ERR, "region of %zu bytes is larger than the supported %zu",
		     cfg->size, MAX_SIZE);
		return -E2BIG;
	}
	if (ps <= 0 || ps > (long)WIRE_PAGE_MAX)
		return -EINVAL;
	if (!cfg->peer_buffer_max)
		cfg->peer_buffer_max = DEFAULT_PEER_BUFFER_MAX;
	if (cfg->peer_buffer_max < MIN_PEER_BUFFER_MAX) {
		ulog(UDSM_LOG_ERR, "peer_buffer_max of %zu bytes is below the minimum %zu",
		     cfg->peer_buffer_max, MIN_PEER_BUFFER_MAX);
		return -EINVAL;
	}
	if (!cfg->peer_timeout_ms)
		cfg->peer_timeout_ms = env_int("UDSM_PEER_TIMEOUT_MS", DEFAULT_PEER_TIMEOUT_MS);
	if (cfg->peer_timeout_ms < MIN_PEER_TIMEOUT_MS) {
		ulog(UDSM_LOG_ERR, "peer_timeout_ms of %d is below the minimum %d",
		     cfg->peer_timeout_ms, MIN_PEER_TIMEOUT_MS);
		return -EINVAL;
	}
	return 0;
}

UDSM_EXPORT int udsm_open(const struct udsm_config *cfg_in, struct udsm **out)
{
	struct udsm_config cfg = { 0 };
	struct env_launch env;
	struct udsm *d = NULL;
	long ps = sysconf(_SC_PAGESIZE);
	unsigned want_id;
	int err;

	if (cfg_in)
		cfg = *cfg_in;
	if (out)
		*out = NULL;
	err = out ? env_defaults(&cfg, &env, &want_id) : -EINVAL;
	if (!err)
		err = udsm_check_config(&cfg);
	if (!err && !(d = calloc(1, sizeof(*d))))
		err = -ENOMEM;
	if (err) {
		if (cfg.listen_fd > 0)
			close(cfg.listen_fd); /* ours from the start, whatever happens */
		return err;
	}
	d->listen_fd = cfg.listen_fd > 0 ? cfg.listen_fd : -1;
	if (d->listen_fd >= 0) /* ours now: no exec'd program inherits it */
		fcntl(d->listen_fd, F_SETFD, FD_CLOEXEC);
	d->peer_buffer_max = cfg.peer_buffer_max;
	d->peer_timeout_ns = (uint64_t)cfg.peer_timeout_ms * 1000000u;
	d->tick_ns = d->peer_timeout_ns / 8;
	d->epfd = d->evfd = d->lend_evfd = d->lend_epfd = d->memfd = -1;
	d->ring.fd = -1;
	d->lent = d->lend_peer = -1;
	for (unsigned n = 0; n < UDSM_MAX_NODES; n++)
		d->peers[n].fd = -1;
	pthread_mutex_init(&d->mu, NULL);
	pthread_mutex_init(&d->turn, NULL);
	pthread_cond_init(&d->cv, NULL);
	d->ps = (size_t)ps;
	d->nodes = cfg.join ? 0 : cfg.nodes;
	d->want_id = want_id;
	d->size = (cfg.size + d->ps - 1) / d->ps * d->ps;
	d->npages = d->size / d->ps;
	d->spin_us = cfg.spin_us; /* 0: automatic (src/wait.h) */
	d->readahead = cfg.readahead ? cfg.readahead : DEFAULT_READAHEAD;
	if (d->readahead > 0) {
		/*
		 * Up to two windows of read-ahead answers can be on their way from one home to
		 * this node (and as many FETCH_REPLYs from one owner to a home), queued there as
		 * one DATA_SET each: keep them to a quarter of peer_buffer_max, or a home serving
		 * a burst would exceed its bound toward this node and expel it (256 pages are
		 * 1 MiB, four times the smallest bound).
		 */
		size_t cap = node_burst_pages(d);

		if ((size_t)d->readahead > cap) {
			ulog(cfg.readahead ? UDSM_LOG_INFO : UDSM_LOG_DEBUG, "read-ahead of %d pages "
			     "lowered to %zu for peer_buffer_max %zu", d->readahead, cap,
			     d->peer_buffer_max);
			d->readahead = cap ? (int)cap : -1;
		}
	}
	/* The default home layout (first node only: joiners learn it with the offer). */
	d->home_chunk = cfg.home_chunk ? cfg.home_chunk
				       : (uint32_t)env_int("UDSM_HOME_CHUNK", 0);
	if (!d->home_chunk || d->home_chunk > PLACE_CHUNK_MAX)
		d->home_chunk = place_default_chunk(d->npages, d->nodes);
	d->migratory = cfg.migratory >= 0;
	d->hold_ns = cfg.hold_us ? (cfg.hold_us < 0 ? 0 : (uint64_t)cfg.hold_us * 1000u)
				 : DEFAULT_HOLD_US * 1000u;
	if (d->hold_ns > MAX_HOLD_US * 1000u)
		d->hold_ns = MAX_HOLD_US * 1000u;
	fresh_init(&d->fresh);
	d->uffd.fd = -1;

	/* The kernel first: fail before touching the network if it cannot do what we need. */
	if ((err = uffd_open(&d->uffd)))
		goto fail;
	if ((err = cluster_form(d, &cfg)))
		goto fail;
	if ((err = stats_open(d, &cfg)))
		goto fail;
	if ((err = node_engine_init(d)))
		goto fail;
	if ((err = udsm_alloc_init(d)))
		goto fail;
	if ((err = lockd_create(d, &d->lockd)) || (err = tbar_create(&d->tbar)))
		goto fail;
	if ((err = node_start(d)))
		goto fail;
	open_list_add(d);
	ulog(UDSM_LOG_INFO, "node %u of %u up: %zu bytes at %p, homes in chunks of %u pages",
	     d->self, d->nodes, d->size, (void *)d->base, d->home_chunk);
	*out = d;
	return 0;
fail:
	free_node(d);
	return err;
}

UDSM_EXPORT int udsm_close(struct udsm *d)
{
	if (!d)
		return -EINVAL;
	open_list_del(d);
	if (d->lockd)
		lockd_close(d); /* before the hand-over: locks still held are given up */
	node_stop(d);
	stats_close(d); /* the UDSM_STATS report */
	free_node(d);
	return 0;
}

UDSM_EXPORT void *udsm_base(const struct udsm *d)
{
	return d->base;
}

UDSM_EXPORT size_t udsm_size(const struct udsm *d)
{
	return d->size;
}

UDSM_EXPORT size_t udsm_page_size(const struct udsm *d)
{
	return d->ps;
}

UDSM_EXPORT unsigned udsm_node_id(const struct udsm *d)
{
	return d->self;
}

UDSM_EXPORT unsigned udsm_nodes(const struct udsm *d)
{
	return d->nodes;
}

UDSM_EXPORT int udsm_barrier(struct udsm *d)
{
	if (!d)
		return -EINVAL;
	return node_barrier(d);
}

UDSM_EXPORT int udsm_page_state(const struct udsm *d, size_t page)
{
	int s;

	if (!d || page >= d->npages)
		return -EINVAL;
	s = eng_state(d->eng, page);
	switch (s) {
	case ENG_M:
		return UDSM_MODIFIED;
	case ENG_S:
	case ENG_SM_A: /* still readable here while the upgrade is in flight */
		return UDSM_SHARED;
	case ENG_LOST:
		return UDSM_LOST;
	default:
		return UDSM_INVALID;
	}
}

UDSM_EXPORT int udsm_page_home(const struct udsm *d, size_t page)
{
	if (!d || page >= d->npages)
		return -EINVAL;
	return (int)eng_home(d->eng, page);
}

UDSM_EXPORT void udsm_stats(const struct udsm *d, struct udsm_stats *st)
{
	memset(st, 0, sizeof(*st));
	eng_stats(d->eng, st);
#define LD(f) st->f = __atomic_load_n(&d->st.f, __ATOMIC_RELAXED)
	LD(faults);
	LD(read_faults);
	LD(write_faults);
	LD(msgs_sent);
	LD(msgs_recv);
	LD(bytes_sent);
	LD(bytes_recv);
	LD(wakeups);
#undef LD
}

UDSM_EXPORT void *udsm_coalloc(struct udsm *d, size_t size)
{
	if (!d) {
		errno = EINVAL;
		return NULL;
	}
	return alloc_coalloc(d->alloc, size, UDSM_PLACE_BLOCK);
}

UDSM_EXPORT void *udsm_coalloc_placed(struct udsm *d, size_t size, int placement)
{
	if (!d) {
		errno = EINVAL;
		return NULL;
	}
	return alloc_coalloc(d->alloc, size, placement);
}

UDSM_EXPORT int udsm_cofree(struct udsm *d, void *p)
{
	if (!d)
		return -EINVAL;
	return alloc_cofree(d->alloc, p);
}

UDSM_EXPORT void *udsm_malloc(struct udsm *d, size_t size)
{
	if (!d) {
		errno = EINVAL;
		return NULL;
	}
	return alloc_malloc(d->alloc, size);
}

UDSM_EXPORT void udsm_free(struct udsm *d, void *p)
{
	if (d)
		alloc_free(d->alloc, p);
}
