/* SPDX-License-Identifier: MIT */
/*
 * tbarrier.h - udsm_barrier_threads(): a barrier over several threads of every node, built
 * from a local generation-counted barrier whose last arrival enters udsm_barrier().
 */
#ifndef UDSM_TBARRIER_H
#define UDSM_TBARRIER_H

struct tbar;

/** tbar_create() - 0 or -ENOMEM. */
int tbar_create(struct tbar **out);
/** tbar_destroy() - free (NULL is fine); no thread may be inside it. */
void tbar_destroy(struct tbar *tb);

#endif /* UDSM_TBARRIER_H */
