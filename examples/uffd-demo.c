// SPDX-License-Identifier: MIT
/*
 * uffd-demo.c - a guided, self-checking tour of userfaultfd(2).
 *
 * udsm catches every access to a page it does not hold with userfaultfd and
 * fetches the page from another node. This program shows the same mechanics
 * on one machine, with no network: a "home copy" buffer plays the remote
 * owner of the pages. Read it top to bottom together with
 * docs/userfaultfd.md.
 *
 * What happens, in order:
 *
 *   1. Open a userfaultfd. Three ways, tried in this order:
 *        a) userfaultfd(O_CLOEXEC | O_NONBLOCK): full mode, needs
 *           CAP_SYS_PTRACE or vm.unprivileged_userfaultfd = 1;
 *        b) the same with UFFD_USER_MODE_ONLY added, after EPERM: any user
 *           may do this, but only faults raised by user-space instructions
 *           are reported (see step 10);
 *        c) open("/dev/userfaultfd") + ioctl(USERFAULTFD_IOC_NEW): full
 *           mode for whoever may open the device node.
 *   2. The UFFDIO_API handshake, done twice: once on a throwaway fd to learn
 *      which features the kernel has, then on the real fd asking only for
 *      what we use.
 *   3. mmap() a private anonymous region of NPAGES pages and register it
 *      with UFFDIO_REGISTER for MISSING and WP (write-protect) faults.
 *   4. Start a fault-handling thread. It poll()s the userfaultfd and an
 *      eventfd (used to tell it to stop), reads struct uffd_msg records and
 *      resolves them:
 *        - a MISSING read fault with UFFDIO_COPY + UFFDIO_COPY_MODE_WP: the
 *          page appears readable but write-protected ("Shared"),
 *        - a MISSING write fault with a plain UFFDIO_COPY: the page appears
 *          writable ("Modified"),
 *        - a WP fault with UFFDIO_WRITEPROTECT mode 0: protection lifted,
 *          faulting thread woken (Shared -> Modified),
 *        - UFFDIO_COPY failing with EEXIST (the page is already there, the
 *          message was stale) with UFFDIO_WAKE.
 *   5-9. The main thread touches the pages and checks, after every step,
 *      both the page contents and exactly which faults the handler saw.
 *      Pages are also write-protected (Modified -> Shared) and dropped with
 *      madvise(MADV_DONTNEED) (-> Invalid), after which the next access
 *      must fault again.
 *   10. The kernel itself touches a missing page (read(2) from a pipe into
 *      it): served in full mode, EFAULT in user-mode-only mode.
 *   11. Two threads fault on the same page: one UFFDIO_COPY wakes both, and
 *      the second message, now stale, gets EEXIST and UFFDIO_WAKE.
 *   12. Stop the handler through its eventfd and clean up.
 *
 * The program is also a test: exit status 0 when every check passed, 1 on
 * any mismatch, 77 ("skipped") when userfaultfd cannot be used here at all.
 * Every wait is bounded: poll() has a timeout, and a 20 s alarm() ends the
 * process if a thread ever stays stuck in a fault nobody serves.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

/*
 * Debian 12 ships the Linux 6.1 UAPI headers; the running kernel can be much
 * newer. Anything added after 6.1 (or missing from even older headers) is
 * defined here, with the values the kernel ABI fixes forever.
 */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif

#define NPAGES		4
#define EXIT_SKIP	77
#define WATCHDOG_SECS	20
#define POLL_MS		1000	/* handler wakes at least this often */
#define COALESCE_MS	5000	/* how long to wait for the 2nd fault, step 11 */

/* The demo's whole state. One instance, shared by both threads. */
struct demo {
	int uffd;
	int stop_fd;			/* eventfd: written once to stop handler */
	int done_fd;			/* eventfd: handler -> main, step 11 */
	bool user_mode_only;		/* fd opened with UFFD_USER_MODE_ONLY */
	bool thread_id;			/* UFFD_FEATURE_THREAD_ID enabled */
	size_t psz;			/* page size */
	unsigned char *region;		/* the registered, faulting region */
	unsigned char *home;		/* "remote" owner's copy of each page */
	unsigned char *bounce;		/* UFFDIO_COPY source, handler only */

	/* Step 11: page on which the handler waits for two faults. */
	atomic_int coalesce_page;
	atomic_int readers_done;	/* reader threads past their fault */
	atomic_bool one_copy_woke_both;	/* checked by the main thread */

	/* What the handler did, read by the main thread to verify. */
	atomic_uint n_read;		/* MISSING faults, read access */
	atomic_uint n_write;		/* MISSING faults, write access */
	atomic_uint n_wp;		/* write-protect faults */
	atomic_uint n_copy;		/* UFFDIO_COPY that installed a page */
	atomic_uint n_eexist;		/* UFFDIO_COPY that found the page */
	atomic_uint n_wake;		/* UFFDIO_WAKE issued */
	atomic_uint copies[NPAGES];	/* the same, per page */
};

static struct demo d;

/* A snapshot of the handler's counters, to compare before/after a step. */
struct counts {
	unsigned int read, write, wp, copy, eexist, wake;
};

/* ------------------------------------------------------------------ */
/* Small helpers: reporting, failing, the watchdog.                    */
/* ------------------------------------------------------------------ */

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("FAIL: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	/*
	 * _exit(), not exit(): another thread may be parked inside a page
	 * fault that will now never be served; nothing must wait for it.
	 */
	_exit(EXIT_FAILURE);
}

#define fail_errno(what) fail("%s: %s", (what), strerror(errno))

static void on_alarm(int sig)
{
	static const char msg[] =
		"FAIL: watchdog expired: a fault was never served?\n";
	ssize_t r;

	(void)sig;
	/* Only async-signal-safe calls in here. */
	r = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)r;
	_exit(EXIT_FAILURE);
}

static void step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void step(const char *fmt, ...)
{
	va_list ap;

	printf("\n");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static unsigned char *page_addr(int page)
{
	return d.region + (size_t)page * d.psz;
}

static unsigned char *home_addr(int page)
{
	return d.home + (size_t)page * d.psz;
}

/*
 * Touch memory through volatile pointers, so that the compiler emits
 * exactly the loads and stores the demo talks about: each one may fault.
 */
static unsigned char peek(int page, size_t off)
{
	return *(volatile unsigned char *)(page_addr(page) + off);
}

static void poke(int page, size_t off, unsigned char v)
{
	*(volatile unsigned char *)(page_addr(page) + off) = v;
}

static struct counts snapshot(void)
{
	struct counts c = {
		.read = atomic_load(&d.n_read),
		.write = atomic_load(&d.n_write),
		.wp = atomic_load(&d.n_wp),
		.copy = atomic_load(&d.n_copy),
		.eexist = atomic_load(&d.n_eexist),
		.wake = atomic_load(&d.n_wake),
	};

	return c;
}

/*
 * Check that, since @before, the handler saw exactly the given number of
 * each kind of fault. Because the main thread only continues once its fault
 * was resolved, and the handler counts before resolving, the counters are
 * exact here: no sleeping or polling needed.
 */
static void expect_faults(const char *what, const struct counts *before,
			  unsigned int read, unsigned int write, unsigned int wp)
{
	struct counts now = snapshot();
	unsigned int dr = now.read - before->read;
	unsigned int dw = now.write - before->write;
	unsigned int dp = now.wp - before->wp;

	if (dr != read || dw != write || dp != wp)
		fail("%s: expected %u read / %u write / %u wp fault(s), handler saw %u / %u / %u",
		     what, read, write, wp, dr, dw, dp);
	printf("     ok: %s: %u read / %u write / %u wp fault(s)\n",
	       what, read, write, wp);
}

/* Compare @len bytes of region page @page at @off with @want. */
static void expect_bytes(const char *what, int page, size_t off,
			 const unsigned char *want, size_t len)
{
	if (memcmp(page_addr(page) + off, want, len) != 0)
		fail("%s: page %d content differs from what was expected", what, page);
	printf("     ok: %s\n", what);
}

/* ------------------------------------------------------------------ */
/* Step 1: opening the userfaultfd.                                    */
/* ------------------------------------------------------------------ */

static long sys_userfaultfd(int flags)
{
#ifdef SYS_userfaultfd
	return syscall(SYS_userfaultfd, flags);
#else
	(void)flags;
	errno = ENOSYS;
	return -1;
#endif
}

/*
 * Returns the new fd, or -1 if no way worked (then userfaultfd is simply
 * unavailable here and the caller skips). *user_only tells whether the fd
 * only reports faults raised in user mode.
 */
static int open_uffd(bool verbose, bool *user_only)
{
	int fd, dev, e_full, e_dev;

	/*
	 * a) Full mode. O_NONBLOCK makes read() return EAGAIN instead of
	 * blocking when no message is queued: we learn about messages from
	 * poll(), and a second reader (or a spurious wakeup) must not leave
	 * us stuck in read().
	 */
	fd = (int)sys_userfaultfd(O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		if (verbose)
			printf("     userfaultfd(O_CLOEXEC|O_NONBLOCK) = %d: full mode\n", fd);
		*user_only = false;
		return fd;
	}
	e_full = errno;
	if (verbose)
		printf("     userfaultfd(O_CLOEXEC|O_NONBLOCK): %s\n", strerror(e_full));

	/*
	 * b) EPERM means "not privileged enough for full mode" (no
	 * CAP_SYS_PTRACE and vm.unprivileged_userfaultfd = 0). Asking for
	 * user-mode-only faults is always allowed since Linux 5.11.
	 */
	if (e_full == EPERM) {
		fd = (int)sys_userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		if (fd >= 0) {
			if (verbose)
				printf("     userfaultfd(O_CLOEXEC|O_NONBLOCK|UFFD_USER_MODE_ONLY) = %d: user-mode-only\n",
				       fd);
			*user_only = true;
			return fd;
		}
		if (verbose)
			printf("     userfaultfd(...|UFFD_USER_MODE_ONLY): %s\n", strerror(errno));
	}

	/*
	 * c) /dev/userfaultfd (Linux 6.1+): permission to open the device
	 * node is the privilege check, so an administrator can grant full
	 * mode to a group without the sysctl. The fd we keep is the one the
	 * ioctl returns, not the device fd.
	 */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		e_dev = errno;
		close(dev);
		if (fd >= 0) {
			if (verbose)
				printf("     /dev/userfaultfd + USERFAULTFD_IOC_NEW = %d: full mode\n", fd);
			*user_only = false;
			return fd;
		}
	} else {
		e_dev = errno;
	}
	if (verbose)
		printf("     /dev/userfaultfd: %s\n", strerror(e_dev));
	return -1;
}

/* ------------------------------------------------------------------ */
/* Step 2: the API handshake and feature names.                        */
/* ------------------------------------------------------------------ */

static const char *const feature_names[] = {
	[0] = "PAGEFAULT_FLAG_WP",	[1] = "EVENT_FORK",
	[2] = "EVENT_REMAP",		[3] = "EVENT_REMOVE",
	[4] = "MISSING_HUGETLBFS",	[5] = "MISSING_SHMEM",
	[6] = "EVENT_UNMAP",		[7] = "SIGBUS",
	[8] = "THREAD_ID",		[9] = "MINOR_HUGETLBFS",
	[10] = "MINOR_SHMEM",		[11] = "EXACT_ADDRESS",
	[12] = "WP_HUGETLBFS_SHMEM",	[13] = "WP_UNPOPULATED",
	[14] = "POISON",		[15] = "WP_ASYNC",
	[16] = "MOVE",
};

/* Bit numbers of the ioctl masks in uffdio_api.ioctls / uffdio_register.ioctls. */
static const char *const ioctl_names[64] = {
	[_UFFDIO_REGISTER] = "REGISTER",	[_UFFDIO_UNREGISTER] = "UNREGISTER",
	[_UFFDIO_WAKE] = "WAKE",		[_UFFDIO_COPY] = "COPY",
	[_UFFDIO_ZEROPAGE] = "ZEROPAGE",	[_UFFDIO_MOVE] = "MOVE",
	[_UFFDIO_WRITEPROTECT] = "WRITEPROTECT", [_UFFDIO_CONTINUE] = "CONTINUE",
	[_UFFDIO_POISON] = "POISON",		[_UFFDIO_API] = "API",
};

/* Print a bit mask as hex, then its bits by name, wrapped. */
static void print_mask(const char *label, uint64_t mask,
		       const char *const *names, size_t nnames)
{
	int col = 80;

	printf("     %s %#" PRIx64 ":", label, mask);
	for (unsigned int bit = 0; bit < 64; bit++) {
		char buf[16];
		const char *name;

		if (!(mask & ((uint64_t)1 << bit)))
			continue;
		name = bit < nnames ? names[bit] : NULL;
		if (!name) {
			snprintf(buf, sizeof(buf), "bit%u", bit);
			name = buf;
		}
		if (col + (int)strlen(name) + 1 > 76) {
			printf("\n       ");
			col = 7;
		}
		col += printf(" %s", name);
	}
	printf("\n");
}

/* ------------------------------------------------------------------ */
/* Step 4: the fault handler.                                          */
/* ------------------------------------------------------------------ */

static void uffd_wake(int page)
{
	struct uffdio_range r = {
		.start = (uintptr_t)page_addr(page),
		.len = d.psz,
	};

	/*
	 * Print and count before the ioctl: once it returns, the woken
	 * thread races ahead, and its output should follow ours.
	 */
	printf("     UFFDIO_WAKE page %d: any thread still waiting retries its access\n", page);
	atomic_fetch_add(&d.n_wake, 1);
	if (ioctl(d.uffd, UFFDIO_WAKE, &r) < 0)
		fail_errno("UFFDIO_WAKE");
}

/*
 * Resolve a MISSING fault: "fetch" the page from its owner (here: the home
 * copy) into a private buffer, then install it atomically with UFFDIO_COPY.
 * UFFDIO_COPY allocates the page, copies @len bytes from src, maps it at
 * dst and, unless told DONTWAKE, wakes every thread waiting on that range.
 */
static void serve_missing(int page, bool writable)
{
	struct uffdio_copy copy;
	int tries = 0;

	memcpy(d.bounce, home_addr(page), d.psz);
	printf("     UFFDIO_COPY%s page %d: install it %s\n",
	       writable ? "" : "(MODE_WP)", page,
	       writable ? "writable (M)" : "read-only (S)");
	/* Counted up front (see uffd_wake()), taken back on EEXIST. */
	atomic_fetch_add(&d.n_copy, 1);
	atomic_fetch_add(&d.copies[page], 1);
	for (;;) {
		copy = (struct uffdio_copy){
			.dst = (uintptr_t)page_addr(page),
			.src = (uintptr_t)d.bounce,
			.len = d.psz,
			/*
			 * Read fault: map it write-protected, so the first
			 * store will trap (WP fault) and we get to see the
			 * upgrade. Write fault: map it writable at once.
			 */
			.mode = writable ? 0 : UFFDIO_COPY_MODE_WP,
		};
		if (ioctl(d.uffd, UFFDIO_COPY, &copy) == 0)
			break;
		if (errno == EEXIST) {
			/*
			 * The page is already mapped: someone installed it
			 * after this fault was reported, so the message is
			 * stale. A failed UFFDIO_COPY wakes nobody, so the
			 * faulting thread would sleep forever: wake it.
			 */
			atomic_fetch_sub(&d.n_copy, 1);
			atomic_fetch_sub(&d.copies[page], 1);
			atomic_fetch_add(&d.n_eexist, 1);
			printf("     -> EEXIST: page %d is already present, the fault was stale\n",
			       page);
			uffd_wake(page);
			return;
		}
		if (errno == EAGAIN && ++tries < 100) {
			/*
			 * The address space is changing under us (e.g. an
			 * mremap or a non-cooperative event not yet read);
			 * copy.copy tells how much was done. Retry.
			 */
			continue;
		}
		fail_errno("UFFDIO_COPY");
	}
	if (copy.copy != (int64_t)d.psz)
		fail("UFFDIO_COPY copied %" PRId64 " bytes, not a page", (int64_t)copy.copy);
}

static void set_wp(int page, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = {
			.start = (uintptr_t)page_addr(page),
			.len = d.psz,
		},
		/*
		 * MODE_WP set: write-protect. MODE_WP clear: remove the
		 * protection and, without MODE_DONTWAKE, wake the threads
		 * waiting on a WP fault in the range.
		 */
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	int tries = 0;

	while (ioctl(d.uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		if (errno != EAGAIN || ++tries >= 100)
			fail_errno("UFFDIO_WRITEPROTECT");
	}
}

static int fault_page(const struct uffd_msg *msg)
{
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address;
	uintptr_t base = (uintptr_t)d.region;

	if (addr < base || addr >= base + NPAGES * d.psz)
		fail("fault at %#" PRIxPTR ", outside the region", addr);
	return (int)((addr - base) / d.psz);
}

/*
 * Report and count a fault as soon as its message is read. Counting
 * before resolving is what makes the main thread's checks exact: by the
 * time the faulting thread runs again, the counter has moved.
 */
static void note_fault(const struct uffd_msg *msg)
{
	uint64_t flags = msg->arg.pagefault.flags;
	char tid[32] = "";
	const char *kind;

	/*
	 * The flags tell the kind: WP set means the page is present but
	 * write-protected (always a store). Otherwise the page is missing,
	 * and WRITE tells whether the access was a store.
	 */
	if (flags & UFFD_PAGEFAULT_FLAG_WP) {
		kind = "wp";
		atomic_fetch_add(&d.n_wp, 1);
	} else if (flags & UFFD_PAGEFAULT_FLAG_WRITE) {
		kind = "write";
		atomic_fetch_add(&d.n_write, 1);
	} else {
		kind = "read";
		atomic_fetch_add(&d.n_read, 1);
	}
	if (d.thread_id)
		snprintf(tid, sizeof(tid), " (tid %u)", msg->arg.pagefault.feat.ptid);
	printf(" [x] PAGEFAULT %s at page %d%s\n", kind, fault_page(msg), tid);
}

static void resolve_fault(const struct uffd_msg *msg)
{
	uint64_t flags = msg->arg.pagefault.flags;
	int page = fault_page(msg);

	if (flags & UFFD_PAGEFAULT_FLAG_WP) {
		/* S -> M: lift the protection; this also wakes the writer. */
		printf("     UFFDIO_WRITEPROTECT(mode 0) page %d: make it writable (M)\n", page);
		set_wp(page, false);
	} else if (flags & UFFD_PAGEFAULT_FLAG_WRITE) {
		serve_missing(page, true);		/* I -> M */
	} else {
		serve_missing(page, false);		/* I -> S */
	}
}

/*
 * Read whatever messages are queued. Returns the number read (0 if none:
 * poll() can report readiness that another reader already consumed).
 */
static int read_msgs(struct uffd_msg *msgs, int max)
{
	ssize_t n = read(d.uffd, msgs, (size_t)max * sizeof(*msgs));

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		fail_errno("read(uffd)");
	}
	if (n % (ssize_t)sizeof(*msgs) != 0)
		fail("read(uffd) returned a partial message (%zd bytes)", n);
	return (int)(n / (ssize_t)sizeof(*msgs));
}

/*
 * Step 11: after the single UFFDIO_COPY, and before answering the second
 * message, see whether both reader threads get past their fault. They can
 * only do so if that one copy woke them both.
 */
static void check_both_woken(void)
{
	const struct timespec ms = { .tv_sec = 0, .tv_nsec = 1000 * 1000 };

	for (int i = 0; i < COALESCE_MS; i++) {
		if (atomic_load(&d.readers_done) == 2) {
			atomic_store(&d.one_copy_woke_both, true);
			printf("     both readers are running again: that one UFFDIO_COPY woke both\n");
			return;
		}
		nanosleep(&ms, NULL);
	}
	printf("     the readers did not both wake up after the UFFDIO_COPY\n");
}

/* Tell the main thread that step 11's faults have all been answered. */
static void coalesce_done(void)
{
	uint64_t one = 1;

	if (write(d.done_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		fail_errno("write(eventfd)");
}

static void *handler_main(void *arg)
{
	struct pollfd pfd[2] = {
		{ .fd = d.uffd, .events = POLLIN },
		{ .fd = d.stop_fd, .events = POLLIN },
	};
	struct uffd_msg held;		/* 1st fault on the coalesce page */
	bool holding = false;

	(void)arg;
	for (;;) {
		struct uffd_msg msgs[16];
		int n, ret;

		/*
		 * Bounded wait. While a fault is held back (step 11) the
		 * timeout is how long we wait for the second one; otherwise
		 * it just bounds the idle sleep (a real service would check
		 * its peers' health here).
		 */
		ret = poll(pfd, 2, holding ? COALESCE_MS : POLL_MS);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			fail_errno("poll");
		}
		if (ret == 0) {
			if (holding) {
				printf("     no second fault within %d ms, serving the first alone\n",
				       COALESCE_MS);
				resolve_fault(&held);
				holding = false;
				atomic_store(&d.coalesce_page, -1);
				coalesce_done();
			}
			continue;
		}
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			fail("userfaultfd poll error (revents %#x)", (unsigned int)pfd[0].revents);

		n = (pfd[0].revents & POLLIN) ? read_msgs(msgs, 16) : 0;
		for (int i = 0; i < n; i++) {
			const struct uffd_msg *m = &msgs[i];

			if (m->event != UFFD_EVENT_PAGEFAULT)
				fail("unexpected userfaultfd event %#x", (unsigned int)m->event);
			note_fault(m);

			/*
			 * Step 11 only: hold the first fault on the coalesce
			 * page back until a second thread faults there too.
			 * Both threads then sleep on the same range and one
			 * UFFDIO_COPY wakes both. The second message, handled
			 * after that, finds the page present: EEXIST -> WAKE.
			 */
			if (fault_page(m) == atomic_load(&d.coalesce_page)) {
				if (!holding) {
					held = *m;
					holding = true;
					printf("     (held back until a second thread faults on this page)\n");
					continue;
				}
				resolve_fault(&held);	/* COPY: wakes both */
				holding = false;
				check_both_woken();
				resolve_fault(m);	/* EEXIST: WAKE */
				atomic_store(&d.coalesce_page, -1);
				coalesce_done();
				continue;
			}
			resolve_fault(m);
		}

		/* Stopping: leave no fault we have read unanswered. */
		if (pfd[1].revents & POLLIN) {
			if (holding)
				resolve_fault(&held);
			break;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Step 11 helper: a thread that reads one page.                        */
/* ------------------------------------------------------------------ */

struct reader {
	pthread_t thread;
	int page;
	bool ok;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	/* The first load faults; the whole page is then checked. */
	(void)peek(r->page, 0);
	r->ok = memcmp(page_addr(r->page), home_addr(r->page), d.psz) == 0;
	atomic_fetch_add(&d.readers_done, 1);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Page state changes done by the "owner" side (main thread here).     */
/* ------------------------------------------------------------------ */

/*
 * M -> S. Write-protect FIRST, then copy the contents out. In the other
 * order a store landing between the copy and the protection would be in
 * the page but not in the copy, and would be lost.
 */
static void downgrade(int page)
{
	set_wp(page, true);
	memcpy(home_addr(page), page_addr(page), d.psz);
}

/* S/M -> I. From M, first downgrade (protect + write back), then drop. */
static void invalidate(int page, bool dirty)
{
	if (dirty)
		downgrade(page);
	if (madvise(page_addr(page), d.psz, MADV_DONTNEED) < 0)
		fail_errno("madvise(MADV_DONTNEED)");
}

/* ------------------------------------------------------------------ */

static void *map_pages(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		fail_errno("mmap");
	return p;
}

int main(void)
{
	struct uffdio_api api;
	struct uffdio_register reg;
	struct uffdio_range range;
	uint64_t want, need_ioctls, available;
	struct counts before;
	pthread_t handler;
	struct reader readers[2];
	unsigned char buf[64];
	int probe, pipefd[2];
	uint64_t one = 1;
	bool dummy;
	ssize_t r;
	int err;

	/* Line-buffered even into a pipe, so _exit() loses no full line. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, on_alarm);
	alarm(WATCHDOG_SECS);

	d.psz = (size_t)sysconf(_SC_PAGESIZE);
	atomic_store(&d.coalesce_page, -1);

	step("[1] open a userfaultfd");
	probe = open_uffd(true, &dummy);
	if (probe < 0) {
		printf("SKIP: userfaultfd is not available here\n");
		return EXIT_SKIP;
	}

	step("[2] UFFDIO_API handshake");
	/*
	 * Feature probing: ask for API version UFFD_API with no features.
	 * The kernel answers with every feature and ioctl it supports. Asking
	 * for a feature it lacks would fail with EINVAL, and the handshake
	 * may be done only once per fd: hence a throwaway probe fd.
	 */
	api = (struct uffdio_api){ .api = UFFD_API, .features = 0 };
	if (ioctl(probe, UFFDIO_API, &api) < 0)
		fail_errno("UFFDIO_API (probe)");
	close(probe);
	available = api.features;
	print_mask("kernel features:", available, feature_names,
		   sizeof(feature_names) / sizeof(feature_names[0]));
	print_mask("api ioctls:", api.ioctls, ioctl_names, 64);

	if (!(available & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
		printf("SKIP: this kernel has no userfaultfd write-protect support\n");
		return EXIT_SKIP;
	}

	/* The real fd, opened the same way, with only the features we use. */
	d.uffd = open_uffd(false, &d.user_mode_only);
	if (d.uffd < 0)
		fail("could not open a second userfaultfd");
	want = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	if (available & UFFD_FEATURE_THREAD_ID)
		want |= UFFD_FEATURE_THREAD_ID;	/* msg reports the faulting tid */
	api = (struct uffdio_api){ .api = UFFD_API, .features = want };
	if (ioctl(d.uffd, UFFDIO_API, &api) < 0)
		fail_errno("UFFDIO_API");
	d.thread_id = want & UFFD_FEATURE_THREAD_ID;
	print_mask("enabled:", want, feature_names,
		   sizeof(feature_names) / sizeof(feature_names[0]));

	step("[3] mmap %d private anonymous pages and UFFDIO_REGISTER them (MISSING|WP)",
	     NPAGES);
	d.region = map_pages(NPAGES * d.psz);
	d.home = map_pages(NPAGES * d.psz);
	d.bounce = map_pages(d.psz);
	/* The owner's copy of page i: a recognisable, page-specific pattern. */
	for (int p = 0; p < NPAGES; p++)
		for (size_t i = 0; i < d.psz; i++)
			home_addr(p)[i] = (unsigned char)(0x11 * (p + 1) + i);

	reg = (struct uffdio_register){
		.range = { .start = (uintptr_t)d.region, .len = NPAGES * d.psz },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(d.uffd, UFFDIO_REGISTER, &reg) < 0)
		fail_errno("UFFDIO_REGISTER");
	printf("     region %p, %d x %zu bytes\n", (void *)d.region, NPAGES, d.psz);
	print_mask("range ioctls:", reg.ioctls, ioctl_names, 64);
	need_ioctls = (uint64_t)1 << _UFFDIO_COPY | (uint64_t)1 << _UFFDIO_WAKE |
		      (uint64_t)1 << _UFFDIO_WRITEPROTECT;
	if ((reg.ioctls & need_ioctls) != need_ioctls)
		fail("the registered range lacks COPY, WAKE or WRITEPROTECT");

	step("[4] start the fault-handling thread");
	d.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d.stop_fd < 0 || d.done_fd < 0)
		fail_errno("eventfd");
	err = pthread_create(&handler, NULL, handler_main, NULL);
	if (err)
		fail("pthread_create: %s", strerror(err));
	printf("     handler polls uffd %d and stop eventfd %d\n", d.uffd, d.stop_fd);

	/* ---- read miss: I -> S ---- */
	step("[5] read page 0: I -> S (MISSING read fault, UFFDIO_COPY with MODE_WP)");
	before = snapshot();
	printf("     page 0, byte 0 = %#04x\n", peek(0, 0));
	expect_faults("first read", &before, 1, 0, 0);
	expect_bytes("page 0 holds the owner's copy", 0, 0, home_addr(0), d.psz);
	before = snapshot();
	(void)peek(0, d.psz - 1);
	expect_faults("second read of a present page", &before, 0, 0, 0);

	/* ---- upgrade: S -> M ---- */
	step("[6] write page 0: S -> M (WP fault, UFFDIO_WRITEPROTECT mode 0)");
	before = snapshot();
	poke(0, 0, 0xA0);
	expect_faults("first write", &before, 0, 0, 1);
	before = snapshot();
	poke(0, 1, 0xA1);
	expect_faults("second write", &before, 0, 0, 0);
	buf[0] = 0xA0;
	buf[1] = 0xA1;
	expect_bytes("both stores landed", 0, 0, buf, 2);
	expect_bytes("rest of page 0 unchanged", 0, 2, home_addr(0) + 2, d.psz - 2);

	/* ---- write miss: I -> M ---- */
	step("[7] write page 1: I -> M (MISSING write fault, UFFDIO_COPY writable)");
	before = snapshot();
	poke(1, 7, 0xB7);
	expect_faults("write to a missing page", &before, 0, 1, 0);
	expect_bytes("store landed on top of the copied page", 1, 7,
		     (const unsigned char[]){ 0xB7 }, 1);
	expect_bytes("rest of page 1 is the owner's copy", 1, 8, home_addr(1) + 8, d.psz - 8);

	/* ---- downgrade M -> S, then write again ---- */
	step("[8] downgrade page 0: M -> S (write-protect, then copy out)");
	before = snapshot();
	downgrade(0);
	if (home_addr(0)[0] != 0xA0 || home_addr(0)[1] != 0xA1)
		fail("write-back of page 0 missed the stores");
	printf("     owner's copy of page 0 updated (byte 0 = %#04x)\n", home_addr(0)[0]);
	(void)peek(0, 0);
	expect_faults("read of a Shared page", &before, 0, 0, 0);
	poke(0, 2, 0xA2);
	expect_faults("write to a Shared page", &before, 0, 0, 1);

	/* ---- invalidation: M -> I, and the next read faults again ---- */
	step("[9] invalidate page 0: M -> I (protect, copy out, MADV_DONTNEED), read again");
	invalidate(0, true);
	printf("     page 0 dropped\n");
	before = snapshot();
	if (peek(0, 2) != 0xA2)
		fail("page 0 lost the store made while it was Modified");
	expect_faults("read of a dropped page", &before, 1, 0, 0);
	buf[2] = 0xA2;
	expect_bytes("refetched page 0 has all three stores", 0, 0, buf, 3);
	if (atomic_load(&d.copies[0]) != 2)
		fail("page 0 should have been copied in twice");
	invalidate(0, false);		/* S -> I: nothing to write back */
	before = snapshot();
	(void)peek(0, 0);
	expect_faults("read after dropping a Shared page", &before, 1, 0, 0);

	/* ---- a kernel-mode access: read(2) into the region ---- */
	step("[10] read(2) from a pipe into missing page 2 (the kernel does the store)");
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		fail_errno("pipe2");
	memset(buf, 0xC2, sizeof(buf));
	if (write(pipefd[1], buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		fail_errno("write(pipe)");
	before = snapshot();
	r = read(pipefd[0], page_addr(2), sizeof(buf));
	err = errno;
	close(pipefd[0]);
	close(pipefd[1]);
	if (d.user_mode_only) {
		/*
		 * The fault happened in kernel mode (copy_to_user) and this
		 * fd only hears about user-mode faults: the kernel gives up
		 * on the access and read() fails with EFAULT. No message.
		 */
		printf("     read() = %zd (%s)\n", r, r < 0 ? strerror(err) : "ok");
		if (r != -1 || err != EFAULT)
			fail("user-mode-only fd: read(2) should fail with EFAULT");
		expect_faults("kernel access, user-mode-only fd", &before, 0, 0, 0);
		printf("     ok: EFAULT, as documented for UFFD_USER_MODE_ONLY\n");
		before = snapshot();
		(void)peek(2, 0);
		expect_faults("the same page, touched from user space", &before, 1, 0, 0);
		expect_bytes("page 2 holds the owner's copy", 2, 0, home_addr(2), d.psz);
	} else {
		/* Full mode: the kernel's store is a write fault like any. */
		printf("     read() = %zd\n", r);
		if (r != (ssize_t)sizeof(buf))
			fail("full-mode fd: read(2) should succeed, got %zd (%s)", r, strerror(err));
		expect_faults("kernel access, full-mode fd", &before, 0, 1, 0);
		expect_bytes("pipe data landed in page 2", 2, 0, buf, sizeof(buf));
		expect_bytes("rest of page 2 is the owner's copy", 2, sizeof(buf),
			     home_addr(2) + sizeof(buf), d.psz - sizeof(buf));
	}

	/* ---- two threads, one page ---- */
	step("[11] two threads read missing page 3 at once: one copy serves both");
	before = snapshot();
	atomic_store(&d.coalesce_page, 3);
	for (int i = 0; i < 2; i++) {
		readers[i] = (struct reader){ .page = 3 };
		err = pthread_create(&readers[i].thread, NULL, reader_main, &readers[i]);
		if (err)
			fail("pthread_create: %s", strerror(err));
	}
	for (int i = 0; i < 2; i++)
		pthread_join(readers[i].thread, NULL);
	{
		struct pollfd pfd = { .fd = d.done_fd, .events = POLLIN };
		struct counts now;

		/*
		 * The readers ran on as soon as the first UFFDIO_COPY woke
		 * them; the handler may still be answering the second,
		 * stale message. Wait (bounded) until it is done.
		 */
		if (poll(&pfd, 1, 2 * COALESCE_MS) != 1)
			fail("the handler did not finish step 11 in time");
		now = snapshot();

		if (!readers[0].ok || !readers[1].ok)
			fail("a reader saw wrong contents in page 3");
		printf("     ok: both readers saw the owner's copy\n");
		if (!atomic_load(&d.one_copy_woke_both))
			fail("one UFFDIO_COPY should have woken both readers");
		printf("     ok: one UFFDIO_COPY woke both waiting threads\n");
		if (now.read - before.read != 2 || atomic_load(&d.copies[3]) != 1 ||
		    now.eexist - before.eexist != 1 || now.wake - before.wake != 1)
			fail("expected 2 faults, 1 copy, 1 EEXIST, 1 WAKE; got %u, %u, %u, %u",
			     now.read - before.read, atomic_load(&d.copies[3]),
			     now.eexist - before.eexist, now.wake - before.wake);
		printf("     ok: 2 fault messages, 1 UFFDIO_COPY, 1 EEXIST answered with UFFDIO_WAKE\n");
	}

	/* ---- shutdown ---- */
	step("[12] stop the handler, unregister, unmap");
	if (write(d.stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		fail_errno("write(eventfd)");
	err = pthread_join(handler, NULL);
	if (err)
		fail("pthread_join: %s", strerror(err));
	range = (struct uffdio_range){ .start = (uintptr_t)d.region, .len = NPAGES * d.psz };
	if (ioctl(d.uffd, UFFDIO_UNREGISTER, &range) < 0)
		fail_errno("UFFDIO_UNREGISTER");
	before = snapshot();
	printf("     totals: %u read, %u write, %u wp faults; %u copies, %u EEXIST, %u wake(s)\n",
	       before.read, before.write, before.wp, before.copy, before.eexist, before.wake);
	munmap(d.region, NPAGES * d.psz);
	munmap(d.home, NPAGES * d.psz);
	munmap(d.bounce, d.psz);
	close(d.stop_fd);
	close(d.done_fd);
	close(d.uffd);
	alarm(0);

	printf("\nPASS: every check held (%s fd)\n",
	       d.user_mode_only ? "user-mode-only" : "full-mode");
	return EXIT_SUCCESS;
}
