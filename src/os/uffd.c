/* SPDX-License-Identifier: MIT */
/*
 * uffd.c - userfaultfd: opening, feature probing, registration and page operations.
 * docs/userfaultfd.md explains the calls and how MSI maps onto them.
 */
#define LOG_PREFIX "uffd: "
#include "os/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "os/log.h"
#include "os/uffd_compat.h"
#include "udsm.h"

static const char zero_page[65536] __attribute__((aligned(4096)));

static int open_fd(bool *umo)
{
	int fd, devfd;

	*umo = false;
	fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	if (errno != EPERM && errno != EACCES)
		goto dev;
	fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd >= 0) {
		*umo = true;
		return fd;
	}
dev:
	devfd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (devfd < 0)
		return -errno;
	fd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		fd = -errno;
	close(devfd);
	return fd;
}

int uffd_open(struct uffd *u)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	uint64_t want = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	int fd, err;

	memset(u, 0, sizeof(*u));
	u->fd = -1;

	/* Probe on a throw-away fd: UFFDIO_API may be called once per fd, and asking for no
	 * feature makes the kernel report all it has. */
	fd = open_fd(&u->user_mode_only);
	if (fd < 0) {
		ulog(UDSM_LOG_ERR, LOG_PREFIX "cannot open a userfaultfd: %s (kernel without "
		     "CONFIG_USERFAULTFD, or blocked by seccomp?)", strerror(-fd));
		return fd == -ENOSYS ? UDSM_EKERNEL : fd;
	}
	if (ioctl(fd, UFFDIO_API, &api)) {
		err = -errno;
		log_perror("UFFDIO_API");
		close(fd);
		return err;
	}
	close(fd);
	u->features = api.features;
	if (!(u->features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
		log_err("the kernel lacks write-protect faults on anonymous memory (features %#llx); "
			"udsm needs Linux 5.7 or later", (unsigned long long)u->features);
		return UDSM_EKERNEL;
	}
	/* The application unmapping or moving (part of) the region must not go unnoticed: the
	 * node would go on serving pages it no longer has (see node.c, node_fence()). */
	want |= u->features & (UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP);
	if (u->features & UFFD_FEATURE_POISON) {
		want |= UFFD_FEATURE_POISON;
		u->poison = true;
	} else {
		log_warn("the kernel lacks UFFDIO_POISON (Linux 6.6): a fault that needs a dead node "
			 "will block until the node closes instead of raising SIGBUS");
	}

	/* Optional: an owner giving a page up moves it out in one step (node.c, op_take()). */
	if (u->features & UFFD_FEATURE_MOVE) {
		want |= UFFD_FEATURE_MOVE;
		u->move = true;
	}

	fd = open_fd(&u->user_mode_only);
	if (fd < 0)
		return fd;
	api = (struct uffdio_api){ .api = UFFD_API, .features = want };
	if (ioctl(fd, UFFDIO_API, &api)) {
		err = -errno;
		log_perror("UFFDIO_API with features %#llx", (unsigned long long)want);
		close(fd);
		return err;
	}
	u->fd = fd;
	log_debug("userfaultfd %d open (%s mode), kernel features %#llx", fd,
		  u->user_mode_only ? "user-mode-only" : "full", (unsigned long long)u->features);
	return 0;
}

void uffd_close(struct uffd *u)
{
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

int uffd_map(void *hint, size_t len, bool fixed, void **out)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (fixed ? MAP_FIXED_NOREPLACE : 0);
	void *p = mmap(hint, len, PROT_NONE, flags, -1, 0);

	if (p == MAP_FAILED)
		return -errno;
	if (munlock(p, len) || mprotect(p, len, PROT_READ | PROT_WRITE)) {
		int err = -errno;

		munmap(p, len);
		return err;
	}
	madvise(p, len, MADV_NOHUGEPAGE);
	madvise(p, len, MADV_DONTFORK);
	*out = p;
	return 0;
}

int uffd_register(struct uffd *u, void *addr, size_t len)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};
	uint64_t need = (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_WAKE) |
			(1ULL << _UFFDIO_WRITEPROTECT);

	if (ioctl(u->fd, UFFDIO_REGISTER, &reg)) {
		int err = -errno;

		log_perror("UFFDIO_REGISTER of %zu bytes at %p", len, addr);
		return err;
	}
	if ((reg.ioctls & need) != need) {
		log_err("the kernel offers ioctls %#llx on the region, udsm needs %#llx",
			(unsigned long long)reg.ioctls, (unsigned long long)need);
		return UDSM_EKERNEL;
	}
	if (u->poison && !(reg.ioctls & (1ULL << _UFFDIO_POISON)))
		u->poison = false;
	return 0;
}

int uffd_register_scratch(struct uffd *u, void *addr, size_t len)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	if (!u->move)
		return -ENOTSUP;
	if (ioctl(u->fd, UFFDIO_REGISTER, &reg))
		return -errno;
	if (!(reg.ioctls & (1ULL << _UFFDIO_MOVE))) {
		struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

		ioctl(u->fd, UFFDIO_UNREGISTER, &r);
		u->move = false;
		return -ENOTSUP;
	}
	return 0;
}

int uffd_move(struct uffd *u, void *dst, void *src, size_t len)
{
	struct uffdio_move m = {
		.dst = (uintptr_t)dst,
		.src = (uintptr_t)src,
		.len = len,
		/* udsm's own threads never touch @dst; a fault there from elsewhere
		 * (mlockall) is answered and woken by node.c itself */
		.mode = UFFDIO_MOVE_MODE_DONTWAKE,
	};

	/* EAGAIN is transient (the page is being migrated or split): a few tries, then the
	 * caller takes the other way. */
	for (int tries = 0;;) {
		if (!ioctl(u->fd, UFFDIO_MOVE, &m))
			return 0;
		if (m.move > 0) { /* part of it moved: go on from there */
			m.dst += (uint64_t)m.move;
			m.src += (uint64_t)m.move;
			m.len -= (uint64_t)m.move;
			m.move = 0;
			if (!m.len)
				return 0;
			continue;
		}
		if (errno == EINTR || (errno == EAGAIN && ++tries < 8))
			continue;
		return -errno;
	}
}

int uffd_copy(struct uffd *u, void *dst, const void *src, size_t len, bool wp, size_t *done)
{
	struct uffdio_copy c = {
		.dst = (uintptr_t)dst,
		.src = (uintptr_t)(src ? src : zero_page),
		.len = len,
		.mode = wp ? UFFDIO_COPY_MODE_WP : 0,
	};

	*done = 0;
	if (!src && len > sizeof(zero_page))
		return -EINVAL;
	for (;;) {
		if (!ioctl(u->fd, UFFDIO_COPY, &c)) {
			*done += c.len;
			return 0;
		}
		/* EAGAIN with progress: part of the range was installed (and its waiters woken);
		 * go on with the rest. Without progress: the mm changed under us, retry. */
		if (errno == EAGAIN && c.copy > 0 && (size_t)c.copy < c.len) {
			*done += (size_t)c.copy;
			c.dst += (uint64_t)c.copy;
			if (src)
				c.src += (uint64_t)c.copy;
			c.len -= (uint64_t)c.copy;
			continue;
		}
		if (errno == EAGAIN || errno == EINTR)
			continue;
		return -errno;
	}
}

int uffd_wp(struct uffd *u, void *addr, size_t len, bool on)
{
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	while (ioctl(u->fd, UFFDIO_WRITEPROTECT, &w))
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	return 0;
}

int uffd_wake(struct uffd *u, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(u->fd, UFFDIO_WAKE, &r) ? -errno : 0;
}

int uffd_poison(struct uffd *u, void *addr, size_t len)
{
	uintptr_t at = (uintptr_t)addr, end = at + len;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);

	if (!u->poison)
		return -ENOTSUP;
	/* A range may hold present or already poisoned pages (EEXIST stops the kernel at the
	 * first one): skip each and go on, so the whole range ends up poisoned. */
	while (at < end) {
		struct uffdio_poison p = { .range = { .start = at, .len = end - at } };

		if (!ioctl(u->fd, UFFDIO_POISON, &p))
			break;
		if (p.updated > 0)
			at += (uint64_t)p.updated;
		if (errno == EEXIST) {
			at += ps;
			continue;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return uffd_wake(u, addr, len);
}

int uffd_drop(void *addr, size_t len)
{
	if (!madvise(addr, len, MADV_DONTNEED))
		return 0;
	/* The application locked the region after udsm_open() (mlock, mlockall(MCL_CURRENT |
	 * MCL_ONFAULT)): MADV_DONTNEED refuses locked pages, MADV_DONTNEED_LOCKED (5.18) drops
	 * them. */
	if (errno == EINVAL && !madvise(addr, len, MADV_DONTNEED_LOCKED))
		return 0;
	return -errno;
}
