/* SPDX-License-Identifier: MIT */
/*
 * wait.h - how a node's service thread waits for its next event: poll (epoll_wait with a zero
 * timeout, yielding the CPU between polls) or sleep in epoll_wait. Pure bookkeeping: no
 * system call, the caller passes the clock and the message counter.
 *
 * Why it learns instead of following a rule (docs/PERFORMANCE.md, "Where the time goes"):
 * which is faster depends on the machine, not on the protocol. Polling saves the wake-up of
 * a sleeping thread (30-50 us on some VMs); but on a PVM guest, a busy CPU makes every
 * page-table change of the *other* node (the owner's write-protect of a read miss: 6 us when
 * the requester's CPU sleeps, 45 us when it polls) that much slower, and a poller shares its
 * CPU with the thread it is about to wake. So each node measures its own requests, fault
 * to waiter woken, in both modes and keeps the faster one, trying the other now and then;
 * polling must be faster by an eighth, as what it costs the threads that run after the wake
 * is not in its samples (best() in wait.c).
 *
 * Lingering. Polling for one's own answer saves one wake-up, the requester's; the other, the
 * responder's, is saved only if the responder is awake when the request comes. So a node
 * that polls for its answer says so (WIRE_H_POLL on what it sends), and a node that handles
 * such a message polls afterwards for the sender's next one, for a few of the gaps it has
 * seen between them (never more than LINGER_MAX). Which mode wins is still decided by the
 * requester's measurements: with the hint, its polling samples are those of both ends
 * polling, the regime of the forced-polling figures. Measured on a KVM guest (AMD EPYC
 * family 25) where a wake-up from an idle vCPU costs 20-400 us: a read miss of 24 us with
 * both ends polling, 60-420 us with the responder asleep (docs/PERFORMANCE.md 3.8).
 *
 * Policy (udsm_config.spin_us):
 *   0 (default)  automatic: poll only while one request of this node's threads waits for
 *                an answer (not several: a stream of answers needs the CPUs for the threads
 *                it wakes), or its barrier is pending, and the learnt mode for that is
 *                polling (for a barrier: the mode the barriers' coordinator chose for the
 *                whole cluster, wait_barrier()), for at most a few round trips since the
 *                last event, and only while the poller has its CPU to itself (no other
 *                thread took it for longer than polling saves, nor for the poll's whole
 *                bound); after a hinted message other than barrier traffic, linger; sleep
 *                at once otherwise;
 *   > 0          poll for that long after every event (the behaviour before the automatic
 *                mode; for measurements);
 *   < 0          never poll.
 *
 * Locking: the service thread only.
 */
#ifndef UDSM_WAIT_H
#define UDSM_WAIT_H

#include <stdbool.h>
#include <stdint.h>

enum { WAIT_BLOCK, WAIT_SPIN, WAIT_MODES };

#define WAIT_RING 16 /* latency samples kept per mode (the median is robust to preemption) */
#define WAIT_STREAK 4 /* a mode is kept for this many waits in a row (choose() in wait.c) */

/* What one kind of wait (a fault's request, a barrier) costs in each mode. */
struct wait_learn {
	uint64_t ring[WAIT_MODES][WAIT_RING]; /* ns, most recent WAIT_RING samples */
	uint32_t n[WAIT_MODES];               /* samples taken (the ring holds min(n, RING)) */
	uint64_t med[WAIT_MODES];             /* median of the ring, 0 while empty */
	uint32_t left;                        /* decisions left in the current streak */
	int cur;                              /* the current streak's mode */
	/* Exploration (choose() in wait.c): a streak of the other mode every @every streaks,
	 * @every doubling while the tries confirm the better mode. */
	int was;                              /* the better mode at the last decision */
	uint32_t every;                       /* streaks from one try of the other to the next */
	uint32_t until;                       /* streaks left before the next try */
	uint64_t ref;                         /* ns: the better mode's median when a try last
					       * confirmed it (0: none since the last change) */
	bool trying;                          /* the current streak tries the other mode */
	uint32_t ntry;                        /* samples that streak took */
	uint64_t tried[WAIT_STREAK];          /* ns: those samples */
	uint32_t skip;                        /* samples left to leave out after a change */
	uint32_t settle;                      /* how many to leave out on return from a try */
	uint32_t margin;                      /* polling must win by 1/margin (0: any) */
};

struct wait {
	int policy;         /* WAIT_POLICY_* */
	uint64_t fixed_ns;  /* WAIT_POLICY_FIXED: poll this long after every event */
	uint64_t last_act;  /* the last event handled */
	/* Requests of waiting threads (faults handed to the engine, not yet woken). An
	 * estimate: threads joining a request or pages arriving unasked make it drift, so it
	 * is clamped at zero and forgotten when the node has been idle for a whole sleep. */
	uint32_t out;
	bool single;        /* at most one request was out since out left zero */
	bool expired;       /* polled past the bound for the requests out: stop polling */
	/* A yield between polls gave the CPU to another thread for a while (the node shares
	 * its CPU with another node, or its own application thread needs it): polling for
	 * the current request, or in the current barrier, takes the CPU from the thread that
	 * must run for the answer to come or be used. Stop polling until the next one. */
	bool contended, bar_contended;
	bool bar_served;    /* in the current barrier, this node handled other traffic */
	int mode;           /* mode chosen when out left zero */
	uint64_t t_req, msgs_req;
	/* A barrier of this node's application. */
	bool bar;
	int bar_mode;
	uint64_t t_bar;
	uint64_t t_bar_done; /* when the barrier before ended (0: none yet) */
	struct wait_learn fault, barrier;
	/* Lingering (see above): after a hinted message, poll for the next one. */
	bool linger;        /* poll until linger_bound() after t_hint */
	uint32_t linger_skip; /* hinted batches left to sit out (the CPU was wanted) */
	bool hinted;        /* the batch being handled holds a hinted message */
	uint64_t t_hint;    /* when the last hinted batch was handled */
	uint64_t gap[WAIT_RING]; /* ns from a hinted batch handled to the next one's arrival */
	uint32_t ngap;
	uint64_t gap_med;
};

enum { WAIT_POLICY_AUTO, WAIT_POLICY_FIXED, WAIT_POLICY_NEVER };

/** wait_init() - policy from udsm_config.spin_us (see above). */
void wait_init(struct wait *w, int spin_us);
/** wait_fault() - a fault was handed to the engine at @now; @msgs: messages sent so far. */
void wait_fault(struct wait *w, uint64_t now, uint64_t msgs);
/** wait_woken() - @pages waiting pages were resolved (installed, made writable, woken).
 *  Returns whether that took a sample (what wait_learnt() says may have changed). */
bool wait_woken(struct wait *w, uint64_t now, uint64_t msgs, uint64_t pages);
/** wait_barrier() - this node entered a barrier (@done false) or it completed (true). On
 *  entering, @told is how the barriers' coordinator said every node waits in this one
 *  (WAIT_SPIN or WAIT_BLOCK, eng_barrier_told()), -1 if it said nothing: then the node
 *  chooses by itself. */
void wait_barrier(struct wait *w, uint64_t now, bool done, int told);
/** wait_barrier_next() - at the coordinator, on entering a barrier: how every node is to wait
 *  in the next one (WAIT_SPIN or WAIT_BLOCK, for eng_barrier_mode()), -1 outside the
 *  automatic policy. */
int wait_barrier_next(struct wait *w);
/** wait_served() - a message other than barrier traffic (a request of another node, an answer
 *  to one of this node's other threads) is being handled. */
void wait_served(struct wait *w);
/** wait_hint() - a message with WIRE_H_POLL arrived (it is handled in the current batch). */
void wait_hint(struct wait *w, uint64_t now);
/** wait_event() - the loop handled events at @now. */
static inline void wait_event(struct wait *w, uint64_t now)
{
	w->last_act = now;
	if (w->hinted) {
		w->hinted = false;
		w->t_hint = now;
	}
}
/** wait_polling() - whether what this node sends at @now, in handling an event, should carry
 *  WIRE_H_POLL: after it, the loop polls for a lone request's answer or in its barrier. */
bool wait_polling(const struct wait *w, uint64_t now);
/** wait_poll() - whether the loop should poll now rather than sleep. */
bool wait_poll(const struct wait *w, uint64_t now);
/*
 * A yield that kept the CPU away this long either ran another thread (a bare sched_yield()
 * takes 1-3 us even on a guest whose system calls cost 1 us) or found this vCPU not running
 * at all, its time stolen by the host: on a KVM guest under a loaded host (30-40 % steal) many
 * yields take 10 us to milliseconds with no other thread on the CPU. Only the first is a
 * reason to stop polling, so the caller also says whether this thread was switched out.
 */
#define WAIT_YIELD_BUSY 10000u /* ns */
/* Hinted batches that do not linger after a yield showed the CPU is wanted by another thread. */
#define WAIT_LINGER_SKIP 16
/** wait_yielded() - a yield between empty polls returned at @now after @ns nanoseconds;
 *  @switched: another thread ran on this CPU meanwhile (only asked of the OS when @ns is
 *  that long; the caller counts from the start of the poll, not before). */
void wait_yielded(struct wait *w, uint64_t now, uint64_t ns, bool switched);
/** wait_idle() - a sleep ended with nothing to do: forget requests counted in error. */
void wait_idle(struct wait *w);
/** wait_sleeping() - the loop is about to sleep at @now (wait_poll() said no). */
void wait_sleeping(struct wait *w, uint64_t now);
/** wait_learnt() - WAIT_SPIN or WAIT_BLOCK: what the node currently does for @kind (0 faults,
 *  1 barriers); wait_mode_name() - the same as "poll"/"sleep", for logs. */
int wait_learnt(const struct wait *w, int kind);
const char *wait_mode_name(const struct wait *w, int kind);

#endif /* UDSM_WAIT_H */
