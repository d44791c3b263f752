/* SPDX-License-Identifier: MIT */
/*
 * err.c - udsm_strerror(): library codes from one table, everything else from errno.
 */
#include "udsm.h"

#include <string.h>

#define UDSM_ERRNO_MAP(XX)                                                                     \
	XX(UDSM_EPROTO, "a peer sent a malformed or unexpected message")                       \
	XX(UDSM_EVERSION, "a peer speaks another protocol version or page size")               \
	XX(UDSM_EPEER, "a node this operation needs is gone")                                  \
	XX(UDSM_EKERNEL, "the kernel lacks a userfaultfd feature udsm needs")                   \
	XX(UDSM_ECLOSED, "the node is closing")                                                 \
	XX(UDSM_EADDR, "the region's address range is already in use in this process")        \
	XX(UDSM_EAUTH, "authentication failed: the peer does not hold this cluster's secret")

UDSM_EXPORT const char *udsm_strerror(int err)
{
	switch (err) {
#define XX(code, text)                                                                         \
	case code:                                                                             \
		return text;
		UDSM_ERRNO_MAP(XX)
#undef XX
	case 0:
		return "success";
	default:
		if (err < 0 && err > -4096)
			return strerror(-err);
		return "unknown error";
	}
}
