/* SPDX-License-Identifier: MIT */
/*
 * cluster.c - forming a cluster: mapping the region at one address on every node and
 * connecting every pair of nodes, with every wait bounded by the configured timeout.
 *
 *   joiner                                node 0
 *     connect ---- AUTH_HELLO / AUTH_PROOF / AUTH_CONFIRM ----  mutual proof of the secret
 *                                                 (core/auth.h); nothing else is said first
 *             ---- HELLO(id, my addr) -------->   check magic, version, page size; id is
 *                                                 the joiner's rank, or ANY
 *             <--- HELLO(nodes, size, base) ---   (the offer)
 *     mmap(base, MAP_FIXED_NOREPLACE)
 *             ---- MAPPED -------------------->   (a joiner that cannot map just hangs up)
 *                                                 ... until nodes-1 joiners have mapped ...
 *             <--- PEERS(your id, addresses) --   a joiner that asked for an id gets it;
 *                                                 the others take the free ids in order of
 *                                                 admission
 *     connect to every node 0 < j < id: AUTH_*, then HELLO(id) / HELLO(j), all fields
 *     checked; accept every node k > id the same way
 *             ---- READY --------------------->
 *             <--- GO ------------------------   once every joiner is READY
 * Only then does udsm_open() return anywhere, so a node never faults on a page whose home
 * it cannot reach yet.
 *
 * The accepting side (node 0 for joiners, each joiner for higher-numbered joiners) is a gate:
 * one poll() loop over the listening socket and up to GATE_MAX handshakes in progress, each
 * with its own deadline, so that strays (idle, garbage, half a handshake, the wrong secret)
 * are refused without delaying the real nodes by more than the time it takes to read them.
 */
#define LOG_PREFIX "cluster: "
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/auth.h"
#include "core/place.h"
#include "node.h"
#include "os/log.h"
#include "os/net.h"
#include "os/secret.h"
#include "os/tsan.h"

/* Where node 0 asks the kernel to put the region: high and far from where the kernel puts
 * libraries, heaps and stacks, so that joiners (other processes, other hosts) find it free. */
#ifdef TSAN_REGION_HINT
#define REGION_HINT ((uintptr_t)TSAN_REGION_HINT) /* 0x300000000000 is TSan's (os/tsan.h) */
#else
#define REGION_HINT ((uintptr_t)0x300000000000ull)
#endif
/* A connection to a gate must authenticate and say HELLO within this; a stray gets no more. */
#define HANDSHAKE_MS 3000
/* A joiner must map the region and say MAPPED within this after node 0's offer. */
#define MAPPED_MS 10000
/* After a refusal, how long the gate keeps reading what the refused peer still sends, so that
 * closing does not turn into a reset that would destroy the AUTH_FAIL before it is read. */
#define LINGER_MS 500
/* Once every node is admitted, the rest of formation (peer table, mesh, READY) involves only
 * admitted nodes: it gets this long even when the wait for nodes is unbounded, so that a node
 * that stops after MAPPED cannot hold the others forever. */
#define MESH_MS 60000
/* Handshakes in progress at once: every possible node plus room for strays. When full, the
 * oldest connection that has not authenticated yet makes room. */
#define GATE_MAX (UDSM_MAX_NODES + 16)

/* What every step of formation needs. */
struct form {
	struct udsm *d;
	const struct udsm_config *cfg;
	struct auth_key key;
	int64_t deadline;
	char bound[64]; /* where this node accepts peers */
};

static int64_t mesh_deadline(const struct form *f)
{
	int64_t m = net_now_ms() + MESH_MS;

	return m < f->deadline ? m : f->deadline;
}

static bool is_loopback(const struct sockaddr_in *sa)
{
	return (ntohl(sa->sin_addr.s_addr) >> 24) == 127;
}

static int map_region(struct udsm *d, uintptr_t at)
{
	void *p;
	int err = uffd_map((void *)(at ? at : REGION_HINT), d->size, at != 0, &p);

	if (err == -EEXIST && at) {
		log_err("cannot map the region at %p (%zu bytes): the range is already in use in "
			"this process", (void *)at, d->size);
		return UDSM_EADDR;
	}
	if (err) {
		log_err("mapping the region (%zu bytes): %s", d->size, strerror(-err));
		return err;
	}
	if (at && (uintptr_t)p != at) { /* a kernel before 4.17 ignores MAP_FIXED_NOREPLACE */
		munmap(p, d->size);
		log_err("cannot map the region at %p: the kernel placed it elsewhere", (void *)at);
		return UDSM_EADDR;
	}
	d->base = p;
	return uffd_register(&d->uffd, p, d->size);
}

static void hello_fill(const struct udsm *d, struct wire_hello *h, uint32_t id, const char *addr)
{
	memset(h, 0, sizeof(*h));
	h->magic = WIRE_MAGIC;
	h->version = WIRE_VERSION;
	h->page_size = (uint32_t)d->ps;
	h->node_id = id;
	h->nodes = d->nodes;
	h->region_size = d->size;
	h->base = (uintptr_t)d->base;
	h->home_chunk = d->home_chunk;
	snprintf(h->addr, sizeof(h->addr), "%s", addr ? addr : "");
}

static int send_hello(int fd, const struct wire_hello *h, unsigned src, int64_t deadline)
{
	uint8_t buf[WIRE_HELLO_FIXED + WIRE_ADDR_MAX];
	struct wire_msg m = { .type = WIRE_HELLO, .src = (uint16_t)src, .payload = buf };

	m.len = (uint32_t)wire_hello_encode(buf, h);
	return net_send_msg(fd, &m, deadline);
}

static int send_ctl(int fd, unsigned type, unsigned src, int64_t deadline)
{
	struct wire_msg m = { .type = (uint8_t)type, .src = (uint16_t)src };

	return net_send_msg(fd, &m, deadline);
}

/* Receive a message of @type on @p; anything else is a protocol error, and an AUTH_FAIL is
 * the peer refusing us after the handshake (it did not accept our proof). */
static int recv_type(struct peer *p, unsigned type, struct wire_msg *m, int64_t deadline)
{
	int err = net_recv_msg(p->fd, &p->dec, m, deadline);

	if (err)
		return err;
	if (m->type == WIRE_AUTH_FAIL) {
		log_err("%s refused this node: %s", p->addr,
			auth_fail_text(auth_fail_reason(m)));
		return auth_fail_code(m);
	}
	if (m->type != type) {
		log_err("expected %s from %s, got %s", wire_type_name(type), p->addr,
			wire_type_name(m->type));
		return UDSM_EPROTO;
	}
	return 0;
}

/* Decode and check a HELLO payload from @who; logs why it is refused. */
static int hello_check(const struct wire_msg *m, struct wire_hello *h, const struct udsm *d,
		       const char *who)
{
	if (wire_hello_decode(m->payload, m->len, h) || h->magic != WIRE_MAGIC) {
		log_err("%s is not a udsm node (bad handshake)", who);
		return UDSM_EPROTO;
	}
	if (h->version != WIRE_VERSION) {
		log_err("%s speaks udsm protocol version %u, we speak %u", who, h->version,
			WIRE_VERSION);
		return UDSM_EVERSION;
	}
	if (h->page_size != d->ps) {
		log_err("%s uses %u-byte pages, this node %zu-byte pages", who, h->page_size,
			d->ps);
		return UDSM_EVERSION;
	}
	return 0;
}

static int recv_hello(struct peer *p, struct wire_hello *h, const struct udsm *d,
		      int64_t deadline)
{
	struct wire_msg m;
	int err = recv_type(p, WIRE_HELLO, &m, deadline);

	return err ? err : hello_check(&m, h, d, p->addr);
}

/* A mesh handshake must describe exactly our cluster. */
static int check_mesh_hello(const struct udsm *d, const struct wire_hello *h, const char *who)
{
	if (h->nodes != d->nodes || h->region_size != d->size || h->base != (uintptr_t)d->base ||
	    h->home_chunk != d->home_chunk) {
		log_err("%s belongs to another cluster (%u nodes, %llu bytes at %#llx, home chunk "
			"%u)", who, h->nodes, (unsigned long long)h->region_size,
			(unsigned long long)h->base, h->home_chunk);
		return UDSM_EPROTO;
	}
	return 0;
}

static void peer_init(struct udsm *d, struct peer *p, int fd)
{
	p->fd = fd;
	wire_dec_init(&p->dec, (uint32_t)d->ps);
}

static int listen_on(struct form *f, const char *dflt)
{
	struct udsm *d = f->d;
	const struct udsm_config *cfg = f->cfg;
	struct sockaddr_in sa;
	int err;

	if (d->listen_fd >= 0) { /* the caller's socket (udsm_open took it over) */
		int fl = fcntl(d->listen_fd, F_GETFL);

		/* Accepting is bounded by poll(): a blocking socket would ignore the timeout. */
		if (fl < 0 || fcntl(d->listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return -errno;
	} else {
		err = net_parse(cfg->listen ? cfg->listen : dflt, &sa);
		if (err) {
			log_err("bad listen address '%s' (want host:port)",
				cfg->listen ? cfg->listen : dflt);
			return err;
		}
		d->listen_fd = net_listen(&sa);
		if (d->listen_fd < 0) {
			err = d->listen_fd;
			d->listen_fd = -1;
			log_err("cannot listen on %s: %s", cfg->listen ? cfg->listen : dflt,
				strerror(-err));
			return err;
		}
	}
	if ((err = net_local(d->listen_fd, &sa)))
		return err;
	net_format(&sa, f->bound, sizeof(f->bound));
	/* Protected mode, as in Redis: without a secret anyone who reaches the port could join,
	 * so only this host's loopback peers are accepted, wherever the socket listens. */
	if (!f->key.secret && !is_loopback(&sa))
		log_warn("no cluster secret is set: listening on %s, but only peers on loopback "
			 "addresses (127.0.0.0/8) will be accepted; set UDSM_SECRET (or "
			 "UDSM_SECRET_FILE) on every node to form a cluster across hosts", f->bound);
	return 0;
}

/* Without a secret, refuse to talk to a node that is not on this host. */
static int check_remote(const struct form *f, const struct sockaddr_in *sa, const char *addr)
{
	if (f->key.secret || is_loopback(sa))
		return 0;
	log_err("refusing to connect to %s without a cluster secret: without one, udsm only "
		"talks to loopback addresses; set UDSM_SECRET (or UDSM_SECRET_FILE) on every node",
		addr);
	return UDSM_EAUTH;
}

/* The connecting side of the challenge-response on @p, expecting node @expect to answer. */
static int auth_connect(struct form *f, struct peer *p, uint32_t self, uint32_t expect,
			int64_t deadline)
{
	uint8_t nonce[AUTH_NONCE_LEN];
	struct wire_msg out, m;
	struct auth a;
	int err;

	randombytes_buf(nonce, sizeof(nonce));
	auth_init(&a, &f->key, true, self, expect, expect, nonce);
	auth_start(&a, &out);
	if ((err = net_send_msg(p->fd, &out, deadline)))
		goto io;
	for (;;) {
		int r;

		if ((err = net_recv_msg(p->fd, &p->dec, &m, deadline)))
			goto io;
		r = auth_recv(&a, &m, &out);
		if (out.type)
			err = net_send_msg(p->fd, &out, deadline);
		if (r < 0) {
			log_err("authentication with %s failed: %s", p->addr, a.why);
			return r;
		}
		if (err)
			goto io;
		if (r == 1)
			return 0;
	}
io:
	/* Not an error line: udsm_open()'s caller reports the reset (s2dsm tests one line). A
	 * node that refuses us says why in AUTH_FAIL first; only a version 1 node does not. */
	if (err == -ECONNRESET || err == -EPIPE)
		log_info("%s hung up during authentication (a udsm version 1 node does; see its "
			 "log)", p->addr);
	else if (err != -ETIMEDOUT)
		log_err("authentication with %s failed: %s", p->addr, udsm_strerror(err));
	return err;
}

/* ------------------------------------------------------------------------------------------
 * The gate: the accepting side, handshakes in parallel.
 */

enum gconn_state {
	C_FREE,
	C_AUTH,    /* challenge-response running */
	C_HELLO,   /* authenticated, waiting for its HELLO */
	C_MAPPED,  /* node 0: offer sent, waiting for MAPPED */
	C_CLOSING, /* refused: reading until it hangs up, then close */
};

struct gate_conn {
	enum gconn_state st;
	int fd;
	int64_t until; /* deadline of the current state */
	struct wire_dec dec;
	struct auth auth;
	char from[64];                 /* the address it connected from */
	char addr[WIRE_ADDR_MAX + 1]; /* node 0: where the joiner accepts peers */
	uint32_t asked;               /* node 0: the id it asked for (its rank), or ANY */
};

struct gate {
	struct form *f;
	bool first;          /* node 0 admitting joiners; else a joiner accepting its mesh */
	bool crowded;        /* evictions have been logged */
	int64_t pause_until; /* accepting paused until then (accept failed) */
	unsigned done, want; /* joiners admitted / mesh connections made, and how many */
	/* Node 0: the id admitted joiner i (peers[i], 1..done) asked for, or ANY. Ids are
	 * given out once everyone is admitted (assign_ids()); until then peers[] stays in
	 * order of admission. */
	uint32_t asked[UDSM_MAX_NODES];
	struct gate_conn c[GATE_MAX];
};

static void gconn_close(struct gate_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	wire_dec_free(&c->dec);
	sodium_memzero(&c->auth, sizeof(c->auth));
	c->st = C_FREE;
}

/* Stop talking to @c: a refused peer gets LINGER_MS to read our AUTH_FAIL and hang up. */
static void gconn_refuse(struct gate_conn *c, bool linger)
{
	if (!linger) {
		gconn_close(c);
		return;
	}
	shutdown(c->fd, SHUT_WR);
	wire_dec_free(&c->dec);
	c->st = C_CLOSING;
	c->until = net_now_ms() + LINGER_MS;
}

/* The lingering or unauthenticated connection that has had the most of its time (lingering
 * ones first), or NULL. Only these may be dropped to make room: a node that authenticated
 * keeps its place. */
static struct gate_conn *gate_oldest(struct gate *g)
{
	struct gate_conn *old = NULL;

	for (unsigned i = 0; i < GATE_MAX; i++) {
		struct gate_conn *x = &g->c[i];

		if ((x->st == C_CLOSING || x->st == C_AUTH) &&
		    (!old || (x->st == C_CLOSING && old->st != C_CLOSING) ||
		     (x->st == old->st && x->until < old->until)))
			old = x;
	}
	return old;
}

static void gate_evict(struct gate *g, struct gate_conn *c, const char *why)
{
	if (!g->crowded)
		log_warn("%s: dropping the oldest unauthenticated connections to make room "
			 "(first %s)", why, c->from);
	g->crowded = true;
	gconn_close(c);
}

static void gate_accept(struct gate *g)
{
	struct form *f = g->f;
	struct udsm *d = f->d;

	for (;;) {
		struct sockaddr_in sa;
		socklen_t slen = sizeof(sa);
		uint8_t nonce[AUTH_NONCE_LEN];
		struct gate_conn *c = NULL, *old;
		int fd = net_accept(d->listen_fd, 0);
		uint32_t lo, hi;

		if (fd == -ETIMEDOUT)
			return; /* nothing more to accept now */
		if (fd < 0) {
			/* Out of descriptors (a flood): free one and take the new connection,
			 * which may be a node. Otherwise pause accepting instead of spinning on
			 * a socket that stays readable. */
			if ((fd == -EMFILE || fd == -ENFILE) && (old = gate_oldest(g))) {
				gate_evict(g, old, "out of file descriptors");
				continue;
			}
			log_warn("cannot accept connections: %s", strerror(-fd));
			g->pause_until = net_now_ms() + 100;
			return;
		}
		if (getpeername(fd, (struct sockaddr *)&sa, &slen)) {
			close(fd);
			continue;
		}
		bool stranger = !f->key.secret && !is_loopback(&sa);

		if (stranger) {
			char who[64];

			net_format(&sa, who, sizeof(who));
			log_warn("refused a connection from %s: no cluster secret is set, so only "
				 "loopback peers are accepted (set UDSM_SECRET on every node)", who);
		}
		for (unsigned i = 0; i < GATE_MAX && !c; i++)
			if (g->c[i].st == C_FREE)
				c = &g->c[i];
		/* Full: strays cannot crowd out a node that is still to come. A refused stranger
		 * only takes the place of another refused connection. */
		if (!c && (old = gate_oldest(g)) && (!stranger || old->st == C_CLOSING)) {
			gate_evict(g, old, "too many connections in handshake");
			c = old;
		}
		if (!c) {
			close(fd);
			continue;
		}
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		net_format(&sa, c->from, sizeof(c->from));
		if (stranger) {
			/* Say why (the peer may be a node with a secret, or a misconfigured
			 * one): the reason tells nothing about the cluster. */
			uint8_t why[WIRE_AUTH_FAIL_LEN] = { AUTH_FAIL_LOOPBACK };
			struct wire_msg m = { .type = WIRE_AUTH_FAIL, .len = sizeof(why),
					      .payload = why };

			net_send_msg(fd, &m, 0);
			gconn_refuse(c, true);
			continue;
		}
		wire_dec_init(&c->dec, (uint32_t)d->ps);
		randombytes_buf(nonce, sizeof(nonce));
		if (g->first) {
			lo = hi = WIRE_NODE_ANY;
		} else {
			lo = d->self + 1;
			hi = d->nodes - 1;
		}
		auth_init(&c->auth, &f->key, false, d->self, lo, hi, nonce);
		c->st = C_AUTH;
		c->until = net_now_ms() + HANDSHAKE_MS;
		log_debug("connection from %s", c->from);
	}
}

/* Refuse @c, which asked for an id it cannot have, with AUTH_FAIL_ID: it reads why before we
 * hang up. */
static int refuse_id(struct gate_conn *c)
{
	uint8_t why[WIRE_AUTH_FAIL_LEN] = { AUTH_FAIL_ID };
	struct wire_msg m = { .type = WIRE_AUTH_FAIL, .len = sizeof(why), .payload = why };

	net_send_msg(c->fd, &m, 0);
	gconn_refuse(c, true);
	return 0;
}

/* Node 0: may the joiner on @c have node id @id (its launcher's rank)? ANY always may. An id
 * out of range or already asked for by an admitted joiner, or by one being admitted, means
 * a launcher and the cluster disagree (a wrong size, two processes with one rank): refused,
 * loudly, rather than given another id that would break the program's idea of its rank. */
static int check_asked(struct gate *g, struct gate_conn *c, uint32_t id)
{
	struct udsm *d = g->f->d;

	if (id == WIRE_NODE_ANY)
		return 0;
	if (id == 0 || id >= d->nodes) {
		log_err("refused %s: it asks to be node %u (its rank), but this cluster has nodes "
			"0..%u (are both launched with the same size?)", c->from, id,
			d->nodes - 1);
		return refuse_id(c);
	}
	for (unsigned i = 1; i <= g->done; i++)
		if (g->asked[i] == id) {
			log_err("refused %s: it asks to be node %u (its rank), which %s already "
				"is (two processes with the same rank?)", c->from, id,
				d->peers[i].addr);
			return refuse_id(c);
		}
	for (unsigned i = 0; i < GATE_MAX; i++)
		if (&g->c[i] != c && g->c[i].st == C_MAPPED && g->c[i].asked == id) {
			log_err("refused %s: it asks to be node %u (its rank), which %s is "
				"joining as (two processes with the same rank?)", c->from, id,
				g->c[i].addr);
			return refuse_id(c);
		}
	return 0;
}

/* The message an authenticated connection sends next must be a valid HELLO. */
static int gate_hello(const struct gate_conn *c, const struct wire_msg *m, const struct udsm *d,
		      struct wire_hello *h)
{
	if (m->type != WIRE_HELLO) {
		log_warn("refused %s: expected HELLO, got %s", c->from, wire_type_name(m->type));
		return UDSM_EPROTO;
	}
	return hello_check(m, h, d, c->from);
}

/* Node 0: the joiner authenticated on @c said HELLO: make it the offer. */
static int first_hello(struct gate *g, struct gate_conn *c, const struct wire_msg *m)
{
	struct udsm *d = g->f->d;
	struct wire_hello h;
	int err;

	if ((err = gate_hello(c, m, d, &h)))
		return err;
	if ((err = check_asked(g, c, h.node_id)) || c->st == C_CLOSING)
		return err;
	c->asked = h.node_id;
	/* The joiner said where it listens; a wildcard host means "where I came from". */
	if (!strncmp(h.addr, "0.0.0.0:", 8)) {
		char host[64];

		snprintf(host, sizeof(host), "%s", c->from);
		*strrchr(host, ':') = '\0';
		snprintf(c->addr, sizeof(c->addr), "%.63s:%.16s", host, h.addr + 8);
	} else {
		snprintf(c->addr, sizeof(c->addr), "%s", h.addr);
	}
	hello_fill(d, &h, WIRE_NODE_ANY, g->f->bound);
	if ((err = send_hello(c->fd, &h, 0, 0)))
		return err;
	c->st = C_MAPPED;
	c->until = net_now_ms() + MAPPED_MS;
	return 0;
}

/* Node 0: @c mapped the region: it becomes node done+1. */
static int first_mapped(struct gate *g, struct gate_conn *c, const struct wire_msg *m)
{
	struct udsm *d = g->f->d;
	struct peer *p;

	if (m->type != WIRE_MAPPED) {
		log_warn("node at %s sent %s instead of MAPPED; dropped", c->addr,
			 wire_type_name(m->type));
		return UDSM_EPROTO;
	}
	/* Every joiner that was offered a place may map the region; several may say so in one
	 * round of the gate, after the last place was taken. The others are turned away (their
	 * udsm_open() fails) instead of being admitted past the cluster's size. */
	if (g->done >= g->want) {
		log_warn("node at %s mapped the region after the cluster was full (%u nodes); "
			 "dropped", c->addr, d->nodes);
		return -EBUSY;
	}
	p = &d->peers[g->done + 1];
	p->fd = c->fd;
	p->dec = c->dec; /* the decoder and anything it still holds move to the peer */
	snprintf(p->addr, sizeof(p->addr), "%s", c->addr);
	g->asked[g->done + 1] = c->asked;
	c->fd = -1;
	memset(&c->dec, 0, sizeof(c->dec));
	gconn_close(c);
	g->done++;
	log_info("node at %s joined (%u of %u)", p->addr, g->done + 1, d->nodes);
	return 0;
}

/* A joiner: the authenticated node on @c said HELLO: answer and keep the connection. */
static int mesh_hello(struct gate *g, struct gate_conn *c, const struct wire_msg *m)
{
	struct udsm *d = g->f->d;
	uint32_t id = c->auth.peer_id;
	struct wire_hello h;
	struct peer *p;
	int err;

	if ((err = gate_hello(c, m, d, &h)))
		return err;
	if (h.node_id != id || d->peers[id].fd >= 0) {
		log_warn("unexpected mesh handshake from %s as node %u; dropped", c->from,
			 h.node_id);
		return UDSM_EPROTO;
	}
	if ((err = check_mesh_hello(d, &h, c->from)))
		return err;
	hello_fill(d, &h, d->self, NULL);
	if ((err = send_hello(c->fd, &h, d->self, 0)))
		return err;
	p = &d->peers[id];
	p->fd = c->fd;
	p->dec = c->dec;
	snprintf(p->addr, sizeof(p->addr), "%s", c->from);
	c->fd = -1;
	memset(&c->dec, 0, sizeof(c->dec));
	gconn_close(c);
	g->done++;
	log_debug("node %u (%s) connected", id, p->addr);
	return 0;
}

/* One message on @c. Returns 0 to go on reading, 1 if @c is done with (moved or closed). */
static int gconn_msg(struct gate *g, struct gate_conn *c, const struct wire_msg *m)
{
	struct wire_msg out;
	int r;

	switch (c->st) {
	case C_AUTH:
		r = auth_recv(&c->auth, m, &out);
		if (out.type && net_send_msg(c->fd, &out, 0) && r >= 0)
			r = -EPIPE;
		if (r < 0) {
			log_warn("refused %s: authentication failed: %s", c->from,
				 r == -EPIPE ? "it stopped reading" : c->auth.why);
			gconn_refuse(c, out.type == WIRE_AUTH_FAIL);
			return 1;
		}
		if (r == 1) {
			if (!g->first && g->f->d->peers[c->auth.peer_id].fd >= 0) {
				log_warn("refused %s: node %u is already connected", c->from,
					 c->auth.peer_id);
				gconn_close(c);
				return 1;
			}
			c->st = C_HELLO;
			log_debug("%s authenticated", c->from);
		}
		return 0;
	case C_HELLO:
		r = g->first ? first_hello(g, c, m) : mesh_hello(g, c, m);
		break;
	case C_MAPPED:
		r = first_mapped(g, c, m);
		break;
	default:
		return 1;
	}
	if (r) {
		gconn_close(c);
		return 1;
	}
	return c->st == C_FREE || c->st == C_CLOSING;
}

/* @c is readable: take every complete message it sent. */
static void gconn_read(struct gate *g, struct gate_conn *c)
{
	if (c->st == C_CLOSING) {
		uint8_t buf[4096];
		ssize_t n;
		int k = 0;

		/* Bounded: a peer that keeps sending cannot keep the gate here. */
		while ((n = recv(c->fd, buf, sizeof(buf), 0)) > 0 && ++k < 16)
			;
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			gconn_close(c);
		return;
	}
	for (;;) {
		struct wire_msg m;
		int err = net_recv_msg(c->fd, &c->dec, &m, 0);

		if (err == -ETIMEDOUT)
			return; /* nothing more for now */
		if (err) {
			if (c->st == C_MAPPED)
				log_warn("node at %s could not map the region or went away (%s)",
					 c->addr, udsm_strerror(err));
			else if (err == -ECONNRESET && c->st == C_AUTH &&
				 c->auth.state == AUTH_S_WAIT_HELLO)
				/* Gone before a word: a port probe (s2dsm makes one), not news. */
				log_info("%s closed before authenticating", c->from);
			else if (err == -ECONNRESET)
				log_warn("%s hung up during its handshake", c->from);
			else
				log_warn("dropped %s during its handshake: %s: %s", c->from,
					 udsm_strerror(err), c->dec.why);
			gconn_close(c);
			return;
		}
		if (gconn_msg(g, c, &m))
			return;
	}
}

/* Node 0: admitted joiner @i said something or hung up before it got its peer table. */
static void first_lost(struct gate *g, unsigned i)
{
	struct udsm *d = g->f->d;
	struct wire_msg m;
	int err = net_recv_msg(d->peers[i].fd, &d->peers[i].dec, &m, 0);

	if (err == -ETIMEDOUT)
		return;
	log_warn("node at %s left before the cluster formed (%s); still waiting for %u node(s)",
		 d->peers[i].addr, err ? udsm_strerror(err) : "it spoke out of turn",
		 d->nodes - g->done);
	node_peer_close(&d->peers[i]);
	/* Ids stay 1..done in order of admission: the later ones move down. */
	for (unsigned k = i; k < g->done; k++) {
		d->peers[k] = d->peers[k + 1];
		g->asked[k] = g->asked[k + 1];
	}
	memset(&d->peers[g->done], 0, sizeof(d->peers[g->done]));
	d->peers[g->done].fd = -1;
	g->done--;
}

static const char *state_wants(enum gconn_state st)
{
	switch (st) {
	case C_AUTH:
		return "authentication";
	case C_HELLO:
		return "HELLO";
	default:
		return "MAPPED";
	}
}

/* Accept and hand-shake until g->want connections are made, or the deadline. */
static int gate_run(struct gate *g)
{
	struct udsm *d = g->f->d;
	struct pollfd pf[1 + GATE_MAX + UDSM_MAX_NODES];
	int who[1 + GATE_MAX + UDSM_MAX_NODES];

	while (g->done < g->want) {
		int64_t now = net_now_ms(), wake = g->f->deadline;
		unsigned n = 0;
		int timeout, r;

		if (now >= g->f->deadline)
			return -ETIMEDOUT;
		/* A paused listening socket is left out (fd -1: poll ignores it) until then. */
		pf[n] = (struct pollfd){ .fd = now < g->pause_until ? -1 : d->listen_fd,
					 .events = POLLIN };
		who[n++] = -1;
		if (now < g->pause_until && g->pause_until < wake)
			wake = g->pause_until;
		for (unsigned i = 0; i < GATE_MAX; i++) {
			struct gate_conn *c = &g->c[i];

			if (c->st == C_FREE)
				continue;
			if (c->until <= now) {
				if (c->st != C_CLOSING)
					log_warn("dropped %s: no %s within %d ms", c->from,
						 state_wants(c->st),
						 c->st == C_MAPPED ? MAPPED_MS : HANDSHAKE_MS);
				gconn_close(c);
				continue;
			}
			if (c->until < wake)
				wake = c->until;
			pf[n] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
			who[n++] = (int)i;
		}
		if (g->first)
			for (unsigned i = 1; i <= g->done; i++) {
				pf[n] = (struct pollfd){ .fd = d->peers[i].fd, .events = POLLIN };
				who[n++] = -1 - (int)i;
			}
		if (wake == INT64_MAX)
			timeout = -1;
		else
			timeout = (int)(wake - now < 1000000 ? wake - now : 1000000);
		r = poll(pf, n, timeout);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* Admitted joiners first, from the highest id: a removal shifts only higher ids. */
		for (unsigned k = n; k-- > 1;)
			if (who[k] < -1 && pf[k].revents)
				first_lost(g, (unsigned)(-1 - who[k]));
		for (unsigned k = 1; k < n; k++)
			if (who[k] >= 0 && pf[k].revents && g->c[who[k]].st != C_FREE)
				gconn_read(g, &g->c[who[k]]);
		if (pf[0].revents)
			gate_accept(g);
	}
	return 0;
}

/* Node 0, everyone admitted: a joiner that asked for an id gets it (check_asked() made them
 * distinct and in range), the others take the free ids in order of admission. peers[] is
 * permuted in place, one cycle at a time (a copy of every peer would be 40 KB of stack). */
static void assign_ids(struct gate *g)
{
	struct udsm *d = g->f->d;
	bool taken[UDSM_MAX_NODES] = { false }, done[UDSM_MAX_NODES] = { false };
	unsigned dest[UDSM_MAX_NODES], next = 1;

	for (unsigned i = 1; i <= g->done; i++)
		if (g->asked[i] != WIRE_NODE_ANY) {
			dest[i] = g->asked[i];
			taken[dest[i]] = true;
		}
	for (unsigned i = 1; i <= g->done; i++) {
		if (g->asked[i] != WIRE_NODE_ANY)
			continue;
		while (taken[next])
			next++;
		dest[i] = next;
		taken[next] = true;
	}
	for (unsigned i = 1; i <= g->done; i++)
		if (!taken[i]) /* invariant: done distinct ids for done joiners */
			abort();
	for (unsigned i = 1; i <= g->done; i++)
		log_debug("%s is node %u (%s)", d->peers[i].addr, dest[i],
			  g->asked[i] == WIRE_NODE_ANY ? "in order of arrival" : "its rank");
	/* Follow each cycle i -> dest[i] -> ...: carry one peer along, drop it in its place,
	 * pick up the one that was there. */
	for (unsigned i = 1; i <= g->done; i++) {
		struct peer carry;
		unsigned at = i;

		if (done[i] || dest[i] == i) {
			done[i] = true;
			continue;
		}
		carry = d->peers[i];
		while (!done[at]) {
			unsigned to = dest[at];
			struct peer there = d->peers[to];

			done[at] = true;
			d->peers[to] = carry;
			carry = there;
			at = to;
		}
	}
}

static void gate_free(struct gate *g)
{
	for (unsigned i = 0; i < GATE_MAX; i++)
		if (g->c[i].st != C_FREE)
			gconn_close(&g->c[i]);
	free(g);
}

static struct gate *gate_new(struct form *f, bool first, unsigned want)
{
	struct gate *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->f = f;
	g->first = first;
	g->want = want;
	for (unsigned i = 0; i < GATE_MAX; i++)
		g->c[i].fd = -1;
	return g;
}

/* ------------------------------------------------------------------------------------------
 * Node 0.
 */

static int form_first(struct form *f)
{
	struct wire_peer table[UDSM_MAX_NODES];
	struct udsm *d = f->d;
	int64_t deadline = f->deadline;
	struct gate *g;
	int err;

	d->self = 0;
	if ((err = map_region(d, 0)))
		return err;
	if ((err = listen_on(f, "127.0.0.1:0")))
		return err;
	log_info("node 0 listening on %s, waiting for %u more node(s); region %zu bytes at %p",
		 f->bound, d->nodes - 1, d->size, (void *)d->base);
	if (f->cfg->on_listen)
		f->cfg->on_listen(f->cfg->on_listen_arg, f->bound);

	if (!(g = gate_new(f, true, d->nodes - 1)))
		return -ENOMEM;
	err = gate_run(g);
	if (err == -ETIMEDOUT)
		log_err("timed out waiting for nodes: %u of %u joined", g->done + 1, d->nodes);
	if (!err)
		assign_ids(g);
	gate_free(g);
	if (err)
		return err;

	deadline = mesh_deadline(f);
	for (unsigned i = 1; i < d->nodes; i++) {
		table[i - 1].id = i;
		snprintf(table[i - 1].addr, sizeof(table[i - 1].addr), "%s", d->peers[i].addr);
	}
	for (unsigned i = 1; i < d->nodes; i++) {
		uint8_t buf[WIRE_PEERS_MAX];
		struct wire_msg m = { .type = WIRE_PEERS, .src = 0, .payload = buf };

		m.len = (uint32_t)wire_peers_encode(buf, i, table, d->nodes - 1);
		if ((err = net_send_msg(d->peers[i].fd, &m, deadline))) {
			log_err("node %u (%s) went away while the cluster formed: %s", i,
				d->peers[i].addr, udsm_strerror(err));
			return err;
		}
	}
	for (unsigned i = 1; i < d->nodes; i++) {
		struct wire_msg m;

		if ((err = recv_type(&d->peers[i], WIRE_READY, &m, deadline))) {
			log_err("node %u (%s) did not connect to its peers: %s", i, d->peers[i].addr,
				udsm_strerror(err));
			return err;
		}
	}
	for (unsigned i = 1; i < d->nodes; i++)
		if ((err = send_ctl(d->peers[i].fd, WIRE_GO, 0, deadline)))
			return err;
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Joiners.
 */

static int mesh_connect(struct form *f, unsigned j, const char *addr)
{
	struct udsm *d = f->d;
	struct peer *p = &d->peers[j];
	struct sockaddr_in sa;
	struct wire_hello h;
	int fd, err;

	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	if ((err = net_parse(addr, &sa)))
		return err;
	if ((err = check_remote(f, &sa, addr)))
		return err;
	fd = net_connect(&sa, f->deadline, 1);
	if (fd < 0) {
		log_err("cannot connect to node %u at %s: %s", j, addr, strerror(-fd));
		return fd;
	}
	peer_init(d, p, fd);
	if ((err = auth_connect(f, p, d->self, j, f->deadline)))
		return err;
	hello_fill(d, &h, d->self, NULL);
	if ((err = send_hello(fd, &h, d->self, f->deadline)) ||
	    (err = recv_hello(p, &h, d, f->deadline)))
		return err;
	if (h.node_id != j) {
		log_err("%s answered as node %u, expected node %u", addr, h.node_id, j);
		return UDSM_EPROTO;
	}
	return check_mesh_hello(d, &h, addr);
}

/* The first node's offer; an AUTH_FAIL_ID instead says it refused the id we asked for. */
static int recv_offer(struct peer *p0, struct wire_hello *h, struct udsm *d, int64_t deadline)
{
	struct wire_msg m;
	int err = net_recv_msg(p0->fd, &p0->dec, &m, deadline);

	if (err)
		return err;
	if (m.type == WIRE_AUTH_FAIL && auth_fail_reason(&m) == AUTH_FAIL_ID) {
		log_err("the first node at %s refused this node as node %u (its rank): another "
			"node has that rank, or the cluster is smaller (its log says which)",
			p0->addr, d->want_id);
		return UDSM_EPROTO;
	}
	if (m.type == WIRE_AUTH_FAIL) {
		log_err("%s refused this node: %s", p0->addr,
			auth_fail_text(auth_fail_reason(&m)));
		return auth_fail_code(&m);
	}
	if (m.type != WIRE_HELLO) {
		log_err("expected HELLO from %s, got %s", p0->addr, wire_type_name(m.type));
		return UDSM_EPROTO;
	}
	return hello_check(&m, h, d, p0->addr);
}

static int form_joiner(struct form *f)
{
	struct wire_peer table[UDSM_MAX_NODES];
	struct udsm *d = f->d;
	const struct udsm_config *cfg = f->cfg;
	int64_t deadline = f->deadline;
	struct peer *p0 = &d->peers[0];
	struct sockaddr_in sa;
	struct wire_hello h;
	struct wire_msg m;
	struct gate *g;
	char dflt[64];
	uint32_t self;
	int fd, err, n;

	if ((err = net_parse(cfg->join, &sa))) {
		log_err("bad join address '%s' (want host:port)", cfg->join);
		return err;
	}
	if ((err = check_remote(f, &sa, cfg->join)))
		return err;
	/* Retry while the first node is not listening yet, but not forever: an unbounded
	 * timeout waits for people at the first node, not for a port nobody opens. */
	fd = net_connect(&sa, deadline == INT64_MAX ? net_deadline(30000) : deadline, 1);
	if (fd < 0) {
		log_err("cannot reach the first node at %s: %s", cfg->join, strerror(-fd));
		return fd;
	}
	peer_init(d, p0, fd);
	snprintf(p0->addr, sizeof(p0->addr), "%s", cfg->join);

	/* By default listen where the first node can see us: our end of this connection. */
	net_local(fd, &sa);
	sa.sin_port = 0;
	net_format(&sa, dflt, sizeof(dflt));
	if ((err = listen_on(f, dflt)))
		return err;

	/* Prove we hold the secret (and check that node 0 does) before saying anything else.
	 * Node 0 answers each step at once, so the handshake and the offer are bounded like the
	 * mesh even when the open's timeout is not (a node 0 stopped in the middle). */
	int64_t hs = mesh_deadline(f);

	if ((err = auth_connect(f, p0, WIRE_NODE_ANY, 0, hs)))
		return err;
	hello_fill(d, &h, d->want_id, f->bound);
	h.nodes = 0;
	h.region_size = 0;
	h.base = 0;
	h.home_chunk = 0;
	if ((err = send_hello(fd, &h, 0, hs)))
		return err;
	if ((err = recv_offer(p0, &h, d, hs)))
		return err;
	if (d->want_id != WIRE_NODE_ANY && h.nodes != cfg->nodes) {
		log_err("this node was launched into a %u-node cluster, but the first node at %s "
			"forms one of %u nodes", cfg->nodes, cfg->join, h.nodes);
		return -EINVAL;
	}
	if (h.nodes < 2 || h.nodes > UDSM_MAX_NODES || !h.region_size ||
	    h.region_size % d->ps || h.region_size > UDSM_REGION_MAX || !h.base ||
	    h.base % d->ps || h.base + h.region_size < h.base) {
		log_err("the first node offered an impossible cluster (%u nodes, %llu bytes at "
			"%#llx)", h.nodes, (unsigned long long)h.region_size,
			(unsigned long long)h.base);
		return UDSM_EPROTO;
	}
	if (!h.home_chunk || h.home_chunk > PLACE_CHUNK_MAX) {
		log_err("the first node at %s offers a home layout chunk of %u pages", cfg->join,
			h.home_chunk);
		return UDSM_EPROTO;
	}
	d->nodes = h.nodes;
	d->size = h.region_size;
	d->npages = d->size / d->ps;
	d->home_chunk = h.home_chunk; /* the first node's choice (udsm_config.home_chunk) */
	if ((err = map_region(d, h.base)))
		return err;
	if ((err = send_ctl(fd, WIRE_MAPPED, 0, deadline)))
		return err;

	if ((err = recv_type(p0, WIRE_PEERS, &m, deadline)))
		return err;
	n = wire_peers_decode(m.payload, m.len, &self, table, UDSM_MAX_NODES);
	if (n != (int)d->nodes - 1 || self == 0 || self >= d->nodes) {
		log_err("malformed peer table from the first node");
		return UDSM_EPROTO;
	}
	if (d->want_id != WIRE_NODE_ANY && self != d->want_id) {
		log_err("the first node made this node %u, not %u (its rank)", self, d->want_id);
		return UDSM_EPROTO;
	}
	d->self = self;
	f->deadline = mesh_deadline(f);
	/* Every id 1..nodes-1 exactly once, or some peer would stay unconnected. */
	uint64_t seen = 0;
	for (int i = 0; i < n; i++) {
		unsigned j = table[i].id;

		if (j == 0 || j >= d->nodes || (seen & ((uint64_t)1 << j))) {
			log_err("malformed peer table from the first node");
			return UDSM_EPROTO;
		}
		seen |= (uint64_t)1 << j;
	}
	for (int i = 0; i < n; i++) {
		unsigned j = table[i].id;

		if (j < self && (err = mesh_connect(f, j, table[i].addr)))
			return err;
	}
	if (self + 1 < d->nodes) {
		if (!(g = gate_new(f, false, d->nodes - 1 - self)))
			return -ENOMEM;
		err = gate_run(g);
		gate_free(g);
		if (err) {
			log_err("waiting for nodes %u..%u to connect: %s", self + 1, d->nodes - 1,
				udsm_strerror(err));
			return err;
		}
	}
	/* The rest is bounded by the mesh's deadline, whatever the open's timeout: node 0 sends
	 * GO once every node is READY, and each of them has the same bound. */
	if ((err = send_ctl(fd, WIRE_READY, self, f->deadline)))
		return err;
	if ((err = recv_type(p0, WIRE_GO, &m, f->deadline)))
		return err;
	return 0;
}

int cluster_form(struct udsm *d, const struct udsm_config *cfg)
{
	struct form f = { .d = d, .cfg = cfg, .deadline = net_deadline(cfg->timeout_ms) };
	int err = secret_load(cfg, &f.key);

	if (!err)
		err = cfg->join ? form_joiner(&f) : form_first(&f);
	auth_key_wipe(&f.key);
	if (d->listen_fd >= 0) {
		close(d->listen_fd);
		d->listen_fd = -1;
	}
	if (err == -ETIMEDOUT)
		log_err("the cluster did not form within %d ms", cfg->timeout_ms);
	return err;
}
