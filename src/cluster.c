/* SPDX-License-Identifier: MIT */
/*
 * cluster.c - forming a cluster: mapping the region at one address on every node and
 * connecting every pair of nodes, with every wait bounded by the configured timeout.
 *
 *   joiner                                node 0
 *     connect ---- HELLO(id ANY, my addr) ---->   accept; check magic, version, page size
 *             <--- HELLO(nodes, size, base) ---   (the offer)
 *     mmap(base, MAP_FIXED_NOREPLACE)
 *             ---- MAPPED -------------------->   (a joiner that cannot map just hangs up)
 *                                                 ... until nodes-1 joiners have mapped ...
 *             <--- PEERS(your id, addresses) --   ids 1..nodes-1 in order of arrival
 *     connect to every node 0 < j < id: HELLO(id) / HELLO(j), all fields checked;
 *     accept every node k > id the same way
 *             ---- READY --------------------->
 *             <--- GO ------------------------   once every joiner is READY
 * Only then does udsm_open() return anywhere, so a node never faults on a page whose home
 * it cannot reach yet.
 */
#define LOG_PREFIX "cluster: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "node.h"
#include "os/log.h"
#include "os/net.h"
#include "os/tsan.h"

/* Where node 0 asks the kernel to put the region: high and far from where the kernel puts
 * libraries, heaps and stacks, so that joiners (other processes, other hosts) find it free. */
#ifdef TSAN_REGION_HINT
#define REGION_HINT ((uintptr_t)TSAN_REGION_HINT) /* 0x300000000000 is TSan's (os/tsan.h) */
#else
#define REGION_HINT ((uintptr_t)0x300000000000ull)
#endif
/* Bound for one step of a handshake with a connection that may be a stray client. */
#define STEP_MS 5000

static int64_t step_deadline(int64_t deadline)
{
	int64_t s = net_now_ms() + STEP_MS;

	return s < deadline ? s : deadline;
}

static int map_region(struct udsm *d, uintptr_t at)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	void *p;

	if (at)
		flags |= MAP_FIXED_NOREPLACE;
	p = mmap((void *)(at ? at : REGION_HINT), d->size, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (p == MAP_FAILED) {
		int err = -errno;

		if (err == -EEXIST) {
			log_err("cannot map the region at %p (%zu bytes): the range is already in "
				"use in this process", (void *)at, d->size);
			return UDSM_EADDR;
		}
		log_perror("mmap of %zu bytes", d->size);
		return err;
	}
	if (at && (uintptr_t)p != at) { /* a kernel before 4.17 ignores MAP_FIXED_NOREPLACE */
		munmap(p, d->size);
		log_err("cannot map the region at %p: the kernel placed it elsewhere", (void *)at);
		return UDSM_EADDR;
	}
	d->base = p;
	/* 4 KiB coherence needs 4 KiB pages; children of fork() must not inherit the region. */
	madvise(p, d->size, MADV_NOHUGEPAGE);
	madvise(p, d->size, MADV_DONTFORK);
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

/* Receive a message of @type on @p; anything else is a protocol error. */
static int recv_type(struct peer *p, unsigned type, struct wire_msg *m, int64_t deadline)
{
	int err = net_recv_msg(p->fd, &p->dec, m, deadline);

	if (err)
		return err;
	if (m->type != type) {
		log_err("expected %s from %s, got %s", wire_type_name(type), p->addr,
			wire_type_name(m->type));
		return UDSM_EPROTO;
	}
	return 0;
}

static int recv_hello(struct peer *p, struct wire_hello *h, const struct udsm *d,
		      int64_t deadline)
{
	struct wire_msg m;
	int err = recv_type(p, WIRE_HELLO, &m, deadline);

	if (err)
		return err;
	if (wire_hello_decode(m.payload, m.len, h) || h->magic != WIRE_MAGIC) {
		log_err("%s is not a udsm node (bad handshake)", p->addr);
		return UDSM_EPROTO;
	}
	if (h->version != WIRE_VERSION) {
		log_err("%s speaks udsm protocol version %u, we speak %u", p->addr, h->version,
			WIRE_VERSION);
		return UDSM_EVERSION;
	}
	if (h->page_size != d->ps) {
		log_err("%s uses %u-byte pages, this node %zu-byte pages", p->addr, h->page_size,
			d->ps);
		return UDSM_EVERSION;
	}
	return 0;
}

/* A mesh handshake must describe exactly our cluster. */
static int check_mesh_hello(const struct udsm *d, const struct wire_hello *h, const char *who)
{
	if (h->nodes != d->nodes || h->region_size != d->size || h->base != (uintptr_t)d->base) {
		log_err("%s belongs to another cluster (%u nodes, %llu bytes at %#llx)", who,
			h->nodes, (unsigned long long)h->region_size, (unsigned long long)h->base);
		return UDSM_EPROTO;
	}
	return 0;
}

static void peer_init(struct udsm *d, struct peer *p, int fd)
{
	p->fd = fd;
	wire_dec_init(&p->dec, (uint32_t)d->ps);
}

static int listen_on(struct udsm *d, const struct udsm_config *cfg, const char *dflt,
		     char *bound, size_t blen)
{
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
	net_format(&sa, bound, blen);
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Node 0.
 */

static int form_first(struct udsm *d, const struct udsm_config *cfg, int64_t deadline)
{
	struct wire_peer table[UDSM_MAX_NODES];
	char bound[64];
	unsigned joined = 0;
	int err;

	d->self = 0;
	if ((err = map_region(d, 0)))
		return err;
	if ((err = listen_on(d, cfg, "127.0.0.1:0", bound, sizeof(bound))))
		return err;
	log_info("node 0 listening on %s, waiting for %u more node(s); region %zu bytes at %p",
		 bound, d->nodes - 1, d->size, (void *)d->base);
	if (cfg->on_listen)
		cfg->on_listen(cfg->on_listen_arg, bound);

	/* Admit joiners one at a time; a stray or failing connection is dropped, not fatal. */
	while (joined < d->nodes - 1) {
		struct peer *p = &d->peers[joined + 1];
		struct wire_hello h;
		struct wire_msg m;
		struct sockaddr_in sa;
		socklen_t slen = sizeof(sa);
		int fd = net_accept(d->listen_fd, deadline);

		if (fd < 0) {
			if (fd == -ETIMEDOUT)
				log_err("timed out waiting for nodes: %u of %u joined", joined + 1,
					d->nodes);
			return fd;
		}
		peer_init(d, p, fd);
		if (!getpeername(fd, (struct sockaddr *)&sa, &slen))
			net_format(&sa, p->addr, sizeof(p->addr));
		err = recv_hello(p, &h, d, step_deadline(deadline));
		if (err == UDSM_EVERSION)
			goto drop;
		if (err) {
			log_debug("dropped connection from %s before its handshake: %s", p->addr,
				  udsm_strerror(err));
			goto drop;
		}
		if (h.node_id != WIRE_NODE_ANY) {
			log_warn("%s sent a mesh handshake to node 0; dropped", p->addr);
			goto drop;
		}
		/* The joiner said where it listens; a wildcard host means "where I came from". */
		if (!strncmp(h.addr, "0.0.0.0:", 8)) {
			char host[64];

			net_format(&sa, host, sizeof(host));
			*strrchr(host, ':') = '\0';
			snprintf(p->addr, sizeof(p->addr), "%.63s:%.16s", host, h.addr + 8);
		} else {
			snprintf(p->addr, sizeof(p->addr), "%s", h.addr);
		}
		hello_fill(d, &h, WIRE_NODE_ANY, bound);
		if ((err = send_hello(fd, &h, 0, step_deadline(deadline))))
			goto drop;
		err = recv_type(p, WIRE_MAPPED, &m, step_deadline(deadline));
		if (err) {
			log_warn("node at %s could not map the region or went away (%s); still waiting "
				 "for %u node(s)", p->addr, udsm_strerror(err), d->nodes - 1 - joined);
			goto drop;
		}
		joined++;
		log_info("node at %s joined (%u of %u)", p->addr, joined + 1, d->nodes);
		continue;
drop:
		node_peer_close(p);
	}

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

static int mesh_connect(struct udsm *d, unsigned j, const char *addr, int64_t deadline)
{
	struct peer *p = &d->peers[j];
	struct sockaddr_in sa;
	struct wire_hello h;
	int fd, err;

	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	if ((err = net_parse(addr, &sa)))
		return err;
	fd = net_connect(&sa, deadline, 1);
	if (fd < 0) {
		log_err("cannot connect to node %u at %s: %s", j, addr, strerror(-fd));
		return fd;
	}
	peer_init(d, p, fd);
	hello_fill(d, &h, d->self, NULL);
	if ((err = send_hello(fd, &h, d->self, deadline)) ||
	    (err = recv_hello(p, &h, d, deadline)))
		return err;
	if (h.node_id != j) {
		log_err("%s answered as node %u, expected node %u", addr, h.node_id, j);
		return UDSM_EPROTO;
	}
	return check_mesh_hello(d, &h, addr);
}

static int mesh_accept(struct udsm *d, int64_t deadline)
{
	struct peer tmp = { .fd = -1 };
	struct wire_hello h;
	struct sockaddr_in sa;
	socklen_t slen = sizeof(sa);
	int fd = net_accept(d->listen_fd, deadline), err;

	if (fd < 0)
		return fd;
	peer_init(d, &tmp, fd);
	if (!getpeername(fd, (struct sockaddr *)&sa, &slen))
		net_format(&sa, tmp.addr, sizeof(tmp.addr));
	err = recv_hello(&tmp, &h, d, step_deadline(deadline));
	if (!err && (h.node_id <= d->self || h.node_id >= d->nodes ||
		     d->peers[h.node_id].fd >= 0)) {
		log_warn("unexpected mesh handshake from %s as node %u; dropped", tmp.addr,
			 h.node_id);
		err = -EAGAIN;
	}
	if (!err)
		err = check_mesh_hello(d, &h, tmp.addr);
	if (!err) {
		struct wire_hello me;

		hello_fill(d, &me, d->self, NULL);
		err = send_hello(fd, &me, d->self, deadline);
	}
	if (err) {
		node_peer_close(&tmp);
		return err == UDSM_EPROTO || err == UDSM_EVERSION ? err : -EAGAIN;
	}
	d->peers[h.node_id] = tmp;
	return 0;
}

static int form_joiner(struct udsm *d, const struct udsm_config *cfg, int64_t deadline)
{
	struct wire_peer table[UDSM_MAX_NODES];
	struct peer *p0 = &d->peers[0];
	struct sockaddr_in sa;
	struct wire_hello h;
	struct wire_msg m;
	char bound[64], dflt[64];
	uint32_t self;
	int fd, err, n;

	if ((err = net_parse(cfg->join, &sa))) {
		log_err("bad join address '%s' (want host:port)", cfg->join);
		return err;
	}
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
	if ((err = listen_on(d, cfg, dflt, bound, sizeof(bound))))
		return err;

	hello_fill(d, &h, WIRE_NODE_ANY, bound);
	h.nodes = 0;
	h.region_size = 0;
	h.base = 0;
	if ((err = send_hello(fd, &h, 0, deadline)))
		return err;
	if ((err = recv_hello(p0, &h, d, deadline)))
		return err;
	if (h.nodes < 2 || h.nodes > UDSM_MAX_NODES || !h.region_size ||
	    h.region_size % d->ps || h.region_size > UDSM_REGION_MAX || !h.base ||
	    h.base % d->ps || h.base + h.region_size < h.base) {
		log_err("the first node offered an impossible cluster (%u nodes, %llu bytes at "
			"%#llx)", h.nodes, (unsigned long long)h.region_size,
			(unsigned long long)h.base);
		return UDSM_EPROTO;
	}
	d->nodes = h.nodes;
	d->size = h.region_size;
	d->npages = d->size / d->ps;
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
	d->self = self;
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

		if (j < self && (err = mesh_connect(d, j, table[i].addr, deadline)))
			return err;
	}
	for (unsigned k = self + 1; k < d->nodes;) {
		err = mesh_accept(d, deadline);
		if (err == -EAGAIN)
			continue; /* a stray connection: keep waiting for the real ones */
		if (err) {
			log_err("waiting for nodes %u..%u to connect: %s", self + 1, d->nodes - 1,
				udsm_strerror(err));
			return err;
		}
		k++;
	}
	if ((err = send_ctl(fd, WIRE_READY, self, deadline)))
		return err;
	if ((err = recv_type(p0, WIRE_GO, &m, deadline)))
		return err;
	return 0;
}

int cluster_form(struct udsm *d, const struct udsm_config *cfg)
{
	int64_t deadline = net_deadline(cfg->timeout_ms);
	int err = cfg->join ? form_joiner(d, cfg, deadline) : form_first(d, cfg, deadline);

	if (d->listen_fd >= 0) {
		close(d->listen_fd);
		d->listen_fd = -1;
	}
	if (err == -ETIMEDOUT)
		log_err("the cluster did not form within %d ms", cfg->timeout_ms);
	return err;
}
