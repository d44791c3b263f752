/* SPDX-License-Identifier: MIT */
/*
 * net.h - TCP helpers: address parsing, listening, bounded connects and blocking-with-deadline
 * message exchange used while a cluster forms. IPv4 only.
 * Every function returns 0 (or a non-negative value) or -errno.
 */
#ifndef UDSM_NET_H
#define UDSM_NET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "core/wire.h"

/** Monotonic clock in milliseconds / nanoseconds. */
int64_t net_now_ms(void);
uint64_t net_now_ns(void);

/** Clock in nanoseconds that also runs while the machine is suspended (CLOCK_BOOTTIME): a
 *  node measures its own stalls with it, since its peers' clocks do not stop either. */
uint64_t net_boot_ns(void);

/** Deadline @timeout_ms from now; negative means none (INT64_MAX). */
int64_t net_deadline(int timeout_ms);

/** net_parse() - "host:port" (host may be a name) into @sa. -EINVAL if malformed. */
int net_parse(const char *hostport, struct sockaddr_in *sa);
/** net_format() - @sa as "a.b.c.d:port" into @buf (at least 32 bytes). */
void net_format(const struct sockaddr_in *sa, char *buf, size_t len);

/** net_listen() - a listening, non-blocking socket bound to @sa (port 0: any). */
int net_listen(const struct sockaddr_in *sa);
/** net_local() / net_remote() - the local and remote addresses of a socket. */
int net_local(int fd, struct sockaddr_in *sa);

/**
 * net_connect() - connect to @sa before @deadline, retrying while the peer refuses (it may
 * not listen yet) if @retry. Returns a non-blocking connected socket.
 */
int net_connect(const struct sockaddr_in *sa, int64_t deadline, int retry);
/** net_accept() - accept one connection before @deadline; a non-blocking socket. */
int net_accept(int lfd, int64_t deadline);
/** net_tune() - TCP_NODELAY, keepalive with short timers, TCP_USER_TIMEOUT, non-blocking. */
int net_tune(int fd);

/** net_send_msg() - send one message (payload @m->payload) completely before @deadline. */
int net_send_msg(int fd, const struct wire_msg *m, int64_t deadline);
/**
 * net_recv_msg() - the next message from @fd through @dec before @deadline. The payload stays
 * valid until the next call on @dec. -ETIMEDOUT, -ECONNRESET on EOF, or the decoder's error.
 */
int net_recv_msg(int fd, struct wire_dec *dec, struct wire_msg *m, int64_t deadline);

#endif /* UDSM_NET_H */
