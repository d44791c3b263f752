/* SPDX-License-Identifier: MIT */
/*
 * uffd.h - the userfaultfd edge: open and probe, register, and the page operations the MSI
 * engine needs (install read-only or writable, write-protect, unprotect, drop, wake, poison).
 * Every function returns 0 or -errno and logs nothing except where it says so.
 */
#ifndef UDSM_UFFD_H
#define UDSM_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uffd {
	int fd;
	uint64_t features; /* what the kernel offers */
	bool user_mode_only;
	bool poison; /* UFFDIO_POISON usable */
	bool move;   /* UFFDIO_MOVE usable (Linux 6.8) */
};

/**
 * uffd_open() - open a userfaultfd, trying in turn full mode (needs privilege or
 * vm.unprivileged_userfaultfd=1), UFFD_USER_MODE_ONLY (works unprivileged; faults from inside
 * the kernel, e.g. read(2) into the region, then fail with EFAULT) and /dev/userfaultfd.
 * Probes the features and fails with UDSM_EKERNEL (logged with the reason) if write-protect
 * faults on anonymous memory are missing.
 */
int uffd_open(struct uffd *u);
void uffd_close(struct uffd *u);

/**
 * uffd_map() - map @len bytes of private anonymous memory for userfaultfd to manage, near @hint
 * (NULL: anywhere), or exactly there if @fixed (MAP_FIXED_NOREPLACE): never locked, 4 KiB
 * pages, not inherited by fork(). The region and the scratch are both mapped by it, as
 * UFFDIO_MOVE moves pages only between mappings alike. Mapped inaccessible first: under
 * mlockall(MCL_FUTURE) a new readable mapping is locked and populated at once, with zeros,
 * before userfaultfd can see a single fault (and a 64 GiB region would be allocated in full).
 * The kernel does not populate a PROT_NONE mapping; munlock() then takes it out of the
 * process's lock policy and only then is it made accessible. It must never be locked: udsm
 * moves its pages in and out, which a locked mapping forbids. *@out receives the address (which
 * a kernel before 4.17 may have chosen elsewhere than @hint). -errno; -EEXIST: @fixed and the
 * range is already in use.
 */
int uffd_map(void *hint, size_t len, bool fixed, void **out);

/** uffd_register() - register [addr, addr+len) for MISSING and WP faults and check that the
 *  kernel offers COPY, WAKE and WRITEPROTECT on it. */
int uffd_register(struct uffd *u, void *addr, size_t len);

/** uffd_register_scratch() - register [addr, addr+len), private anonymous memory mapped
 *  like the region, for MISSING faults only, as the destination of uffd_move() (the kernel
 *  moves pages only into a range registered with the same userfaultfd). -ENOTSUP without
 *  UFFDIO_MOVE; nothing is registered then. */
int uffd_register_scratch(struct uffd *u, void *addr, size_t len);
/** uffd_move() - move the present page(s) at @src to the absent range @dst (UFFDIO_MOVE):
 *  in one step @src is unmapped, its next access faulting as missing, and the contents are at
 *  @dst, without a copy or a write-protect first. -EBUSY: a page is shared (KSM, a fork's
 *  copy-on-write) or pinned; -ENOENT: @src is absent; -EEXIST: @dst is not. */
int uffd_move(struct uffd *u, void *dst, void *src, size_t len);
/** uffd_copy() - install @len bytes at @dst from @src (NULL: zeros), write-protected if
 *  @wp, and wake waiters. @done receives the bytes installed, also on failure: an already
 *  present page (-EEXIST) stops the copy at that page and is reported to the caller. */
int uffd_copy(struct uffd *u, void *dst, const void *src, size_t len, bool wp, size_t *done);
/** uffd_wp() - write-protect (@on) or make writable and wake (!@on) a present range. */
int uffd_wp(struct uffd *u, void *addr, size_t len, bool on);
/** uffd_wake() - wake threads waiting on the range. */
int uffd_wake(struct uffd *u, void *addr, size_t len);
/** uffd_poison() - make accesses to the absent range raise SIGBUS; wakes waiters. Without
 *  kernel support returns -ENOTSUP. */
int uffd_poison(struct uffd *u, void *addr, size_t len);
/** uffd_drop() - discard the range's pages (MADV_DONTNEED): the next access faults. */
int uffd_drop(void *addr, size_t len);

#endif /* UDSM_UFFD_H */
