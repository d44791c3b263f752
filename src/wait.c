/* SPDX-License-Identifier: MIT */
/*
 * wait.c - the service thread's waiting strategy (see wait.h).
 */
#include "wait.h"

#include <string.h>

#define US 1000u
#define WARM 4           /* samples of each mode before the medians decide */
#define STREAK WAIT_STREAK /* a mode is kept for this many decisions in a row */
#define EXPLORE 16       /* at first, one streak in this many tries the other mode, */
#define EXPLORE_MAX 128  /* then, while the tries confirm the better mode, up to one in this many */
#define DEFAULT_BOUND (200 * US) /* poll bound before anything was measured */
#define MIN_BOUND (20 * US)
#define MAX_BOUND (1000 * US)
/* A request's or a barrier's poll must beat sleeping by 1/POLL_MARGIN of its median to be
 * chosen (best()). */
#define POLL_MARGIN 8
/* Lingering: poll after a hinted batch for LINGER_MULT of the median gap before the next one,
 * within [MIN_BOUND, LINGER_MAX]; after a yield shows the CPU is wanted, sit out
 * WAIT_LINGER_SKIP hinted batches before lingering again. */
#define LINGER_MULT 4
#define LINGER_MAX (500 * US)
/* Barriers left out of the samples on return from a try of the other mode: on a host whose
 * nodes share CPUs, the barriers right after a streak of polling ones are slow for a while
 * (the scheduler makes the threads that polled wait their turn), and such samples made the
 * sleeping mode look slower than it is (docs/PERFORMANCE.md 3.25). */
#define BAR_SETTLE 32
/* Barriers whose ends are at most this far apart are back to back (wait_barrier()). */
#define BAR_PERIOD_MAX (2000 * US)

void wait_init(struct wait *w, int spin_us)
{
	memset(w, 0, sizeof(*w));
	if (spin_us < 0) {
		w->policy = WAIT_POLICY_NEVER;
	} else if (spin_us > 0) {
		w->policy = WAIT_POLICY_FIXED;
		w->fixed_ns = (uint64_t)spin_us * US;
	} else {
		w->policy = WAIT_POLICY_AUTO;
	}
	w->fault.margin = POLL_MARGIN;
	w->barrier.margin = POLL_MARGIN;
	w->barrier.settle = BAR_SETTLE;
	w->fault.every = w->barrier.every = EXPLORE;
	w->fault.until = w->barrier.until = EXPLORE - 1;
	w->fault.was = w->barrier.was = WAIT_SPIN; /* best() before the warm-up */
}

static uint64_t median(const uint64_t *v, uint32_t n)
{
	uint64_t s[WAIT_RING];

	for (uint32_t i = 0; i < n; i++) { /* insertion sort: at most WAIT_RING samples */
		uint64_t x = v[i];
		uint32_t j = i;

		for (; j > 0 && s[j - 1] > x; j--)
			s[j] = s[j - 1];
		s[j] = x;
	}
	return n ? s[n / 2] : 0;
}

/* Put @v in @ring, of which *@n samples were taken so far; the ring's new median. */
static uint64_t ring_put(uint64_t *ring, uint32_t *n, uint64_t v)
{
	ring[(*n)++ % WAIT_RING] = v;
	return median(ring, *n < WAIT_RING ? *n : WAIT_RING);
}

/* Take the sample @ns of @mode; false if it was not one (see choose()). */
static bool learn(struct wait_learn *l, int mode, uint64_t ns)
{
	if (l->skip) {
		l->skip--; /* the first waits after a change of mode: see choose() */
		return false;
	}
	l->med[mode] = ring_put(l->ring[mode], &l->n[mode], ns);
	if (l->trying && mode == l->cur && l->ntry < STREAK)
		l->tried[l->ntry++] = ns;
	return true;
}

/*
 * The mode with the lower median, polling only if it is lower by a margin. A
 * request's sample ends when the service thread wakes the faulting thread, so it cannot see
 * what a poll costs the threads that run next on the same CPUs: the woken thread itself, the
 * peer's threads. Where those are busy (two nodes' threads spinning on the page they pass
 * back and forth), both modes' samples come out within a few percent, and which one wins the
 * comparison decides which of two stable states the pair settles in. Measured on the PVM
 * guest (AMD EPYC family 26), 2-node ping-pong, medians learnt per node: polling 88-99 us
 * against sleeping 89-113 with the pair settled polling (83 us per transfer); with this
 * margin, polling 82-85 against sleeping 58-76 and the pair sleeping (66-68 us per
 * transfer; docs/PERFORMANCE.md 3.14). A barrier's samples are the whole cluster's, every
 * node waiting in the mode its coordinator chose (wait_barrier()), so what a poll costs the
 * other nodes is in them; the same margin keeps noise from choosing polling. (When each node
 * chose by itself, from its own wait, the margin took the 8-node barrier there from 156-162
 * us to 142-145, docs/PERFORMANCE.md 3.22, but left it in a mixed state, 3.24.)
 */
static int better(const struct wait_learn *l, uint64_t poll, uint64_t sleep)
{
	if (l->margin)
		poll += poll / l->margin;
	return poll <= sleep ? WAIT_SPIN : WAIT_BLOCK;
}

static int best(const struct wait_learn *l)
{
	if (l->n[WAIT_SPIN] < WARM || l->n[WAIT_BLOCK] < WARM)
		return WAIT_SPIN;
	return better(l, l->med[WAIT_SPIN], l->med[WAIT_BLOCK]);
}

/*
 * A try of the other mode ended (its samples are in l->tried; l->cur is the mode tried, @b
 * the better mode now, with the try's samples in the rings). If the try made the tried mode
 * the better one, choose() starts over as after any change. If its samples beat the other
 * mode's median (their own median, by the rule of best(); the other mode's ring holds none of
 * the try's), the machine may have changed, so try again at once: the ring's older samples
 * outvote one streak's. If they did not, the try confirmed the better mode: wait twice as long
 * before the next one. A try that took no sample (its requests overlapped, or were served
 * locally) says nothing: the next comes as planned.
 */
static void tried(struct wait_learn *l, int b)
{
	int t = l->cur;
	uint64_t x;
	bool beats;

	if (!l->ntry || b == t)
		return;
	x = median(l->tried, l->ntry);
	beats = t == WAIT_SPIN ? better(l, x, l->med[WAIT_BLOCK]) == WAIT_SPIN
			       : better(l, l->med[WAIT_SPIN], x) == WAIT_BLOCK;
	if (beats) {
		l->until = 0;
	} else {
		l->every = l->every * 2 > EXPLORE_MAX ? EXPLORE_MAX : l->every * 2;
		l->until = l->every - 1;
		l->ref = l->med[b];
	}
}

/*
 * Whether the better mode's median moved by more than a quarter since a try last confirmed
 * it: the workload or the machine changed (a program that went from reading pages to passing
 * one back and forth), and the other mode's samples, taken rarely, are of the old conditions.
 */
static bool drifted(const struct wait_learn *l, int b)
{
	uint64_t m = l->med[b], r = l->ref;

	return r && (m > r + r / 4 || m < r - r / 4);
}

/*
 * The mode for the next wait: first a few of each, then the one with the lower median, and
 * now and then a streak of the other one, so that a change of conditions (load, placement,
 * what the peers do) is noticed: one streak in EXPLORE at first, then, each time a try
 * confirms the choice, half as often, down to one in EXPLORE_MAX (512 waits); a try that
 * contradicts it is followed by another at once (tried()), and a change of the better mode,
 * or of its median by a quarter (drifted()), starts again from one in EXPLORE. A try is not free: polling makes the peer linger (wait.h),
 * and where sleeping won, a pair that polls takes the CPUs from the application threads
 * that run next. Measured on the PVM guest (AMD EPYC family 26), 2-node ping-pong with both
 * nodes sleeping: trying polling one streak in 16 made a transfer 96 -> 119 us and 85 -> 92
 * (medians of 5-6 runs alternating with sleeping forced); one in 64 or 256 cost nothing
 * measurable (docs/PERFORMANCE.md 3.15).
 *
 * A mode is kept for STREAK waits, and the first wait after a change is not a sample: it
 * measures the change, not the mode. The peers follow this node's mode (lingering, wait.h):
 * the first polling request after sleeping ones finds the responder asleep, the first
 * sleeping one after polling ones may find it still polling. Learnt one wait at a time, the
 * polling mode's tries from the sleeping one all looked as slow as sleeping: measured on a
 * KVM guest where a wake-up costs 300 us, a node stuck sleeping with "poll 594 us over 258
 * samples, sleep 294 us over 3746" while both ends polling answered in 30 us.
 */
static int choose(struct wait_learn *l)
{
	int m;

	if (l->left) {
		l->left--;
		return l->cur;
	}
	if (l->n[WAIT_SPIN] < WARM) {
		m = WAIT_SPIN;
	} else if (l->n[WAIT_BLOCK] < WARM) {
		m = WAIT_BLOCK;
	} else {
		int b = best(l);

		if (l->trying)
			tried(l, b);
		if (b != l->was || drifted(l, b)) { /* conditions changed: check as at first */
			l->was = b;
			l->every = EXPLORE;
			if (l->until > EXPLORE - 1)
				l->until = EXPLORE - 1;
			l->ref = 0;
		}
		l->trying = !l->until;
		if (l->until)
			l->until--;
		else
			l->until = l->every - 1; /* tried() may shorten it */
		m = l->trying ? !b : b;
		l->ntry = 0;
	}
	if (m != l->cur)
		l->skip = l->trying || !l->settle ? 1 : l->settle;
	l->cur = m;
	l->left = STREAK - 1;
	return m;
}

/* How long to poll after the last event while waiting in the polling mode: a few of the
 * round trips measured that way; longer means the answer is not coming soon. */
static uint64_t bound(const struct wait_learn *l, unsigned mult)
{
	uint64_t b = l->med[WAIT_SPIN] ? l->med[WAIT_SPIN] * mult : DEFAULT_BOUND;

	return b < MIN_BOUND ? MIN_BOUND : b > MAX_BOUND ? MAX_BOUND : b;
}

void wait_fault(struct wait *w, uint64_t now, uint64_t msgs)
{
	/* A request joins those out, unless their poll ran out: then the count is stale or
	 * the answer late, and the new request starts a wait of its own. */
	if (w->out && !w->expired) {
		w->out++;
		w->single = false;
		return;
	}
	w->out = 1;
	w->expired = false;
	w->contended = false;
	w->single = true;
	w->t_req = now;
	w->msgs_req = msgs;
	w->mode = w->policy == WAIT_POLICY_AUTO ? choose(&w->fault) : WAIT_SPIN;
}

bool wait_woken(struct wait *w, uint64_t now, uint64_t msgs, uint64_t pages)
{
	if (!w->out)
		return false; /* read-ahead, or a page nobody waited for */
	w->out = pages >= w->out ? 0 : w->out - (uint32_t)pages;
	/* A sample: one request alone, answered over the network (a request that sent no
	 * message was served locally and says nothing about waiting). */
	return !w->out && w->single && msgs != w->msgs_req && w->policy == WAIT_POLICY_AUTO &&
	       learn(&w->fault, w->mode, now - w->t_req);
}

/*
 * Barriers: the cluster waits in one mode, the coordinator's choice. Each node choosing for
 * itself, from how long it waited, settled in a mixed state: a node that polls takes its CPU
 * from the nodes that share it, they arrive later, and it, arriving last, waits least, so
 * its samples favour polling while everybody's barrier gets slower. Measured on the PVM
 * guest, 8 nodes on 2 vCPUs: one node of eight settled polling (its medians: polling 98 us,
 * sleeping 164) and the barrier took 172-177 us in the default configuration against 120-131
 * with every node sleeping (docs/PERFORMANCE.md 3.24, 3.25). So the coordinator learns from the
 * barrier's period, the same on every node, and its release tells every node the mode of the
 * next barrier (WIRE_F_BMODE), so that its samples, and its tries of the other mode, are
 * those of the whole cluster in one mode, as the forced regimes measure them.
 */
void wait_barrier(struct wait *w, uint64_t now, bool done, int told)
{
	if (!done) {
		w->bar = true;
		w->bar_contended = false;
		w->bar_served = false;
		w->t_bar = now;
		w->bar_mode = w->policy != WAIT_POLICY_AUTO ? WAIT_SPIN
			      : told == WAIT_SPIN || told == WAIT_BLOCK ? told
			      : choose(&w->barrier);
		return;
	}
	if (w->bar && w->policy == WAIT_POLICY_AUTO) {
		/* Barriers back to back: the period, from the end of the one before to the end
		 * of this one. Far apart: the wait, as the period is then mostly the
		 * application's own time. */
		uint64_t from = w->t_bar_done && now - w->t_bar_done <= BAR_PERIOD_MAX
					? w->t_bar_done : w->t_bar;

		learn(&w->barrier, w->bar_mode, now - from);
	}
	w->t_bar_done = now;
	w->bar = false;
}

int wait_barrier_next(struct wait *w)
{
	return w->policy == WAIT_POLICY_AUTO ? choose(&w->barrier) : -1;
}

void wait_served(struct wait *w)
{
	w->bar_served = w->bar;
}

void wait_hint(struct wait *w, uint64_t now)
{
	if (w->policy != WAIT_POLICY_AUTO)
		return;
	if (w->hinted)
		return; /* one batch, one sample */
	if (w->t_hint)
		w->gap_med = ring_put(w->gap, &w->ngap, now - w->t_hint);
	w->hinted = true;
	if (w->linger_skip) {
		w->linger_skip--; /* this batch is one of the WAIT_LINGER_SKIP sat out */
		w->linger = false;
	} else {
		w->linger = true;
	}
}

/* How long to linger after a hinted batch: a few of the gaps seen between them. A gap that
 * found this node asleep also holds its wake-up, so the bound errs long, never below what
 * the next message took when it was caught polling. */
static uint64_t linger_bound(const struct wait *w)
{
	uint64_t b = w->ngap < WARM ? DEFAULT_BOUND : w->gap_med * LINGER_MULT;

	return b < MIN_BOUND ? MIN_BOUND : b > LINGER_MAX ? LINGER_MAX : b;
}

/*
 * Whether the poll for a lone request goes on at @now. Its bound since the last event is
 * implied: the request was made while an event was handled, before that event's time was
 * noted (wait_event()), so no event is older than the request.
 */
static bool fault_polls(const struct wait *w, uint64_t now)
{
	return w->out == 1 && w->mode == WAIT_SPIN && !w->expired && !w->contended &&
	       now - w->t_req <= bound(&w->fault, 3);
}

/* Whether this node polls in its barrier (after each event, for a while: wait_poll()). */
static bool barrier_polls(const struct wait *w)
{
	return w->bar && w->bar_mode == WAIT_SPIN && !w->bar_contended;
}

/* Whether the linger after the last hinted batch goes on at @now. */
static bool lingers(const struct wait *w, uint64_t now)
{
	return w->linger && now - w->t_hint <= linger_bound(w);
}

/*
 * What this node sends, it sends while it handles an event (a PING or a BYE goes without a
 * hint: node.c), and after an event the loop polls for a lone request or a barrier as long
 * as wait_poll() allows: so the hint says whether it will. A node asleep in a barrier says
 * so too, rightly: each event starts a poll again.
 */
bool wait_polling(const struct wait *w, uint64_t now)
{
	if (w->policy != WAIT_POLICY_AUTO)
		return false;
	return fault_polls(w, now) || barrier_polls(w);
}

bool wait_poll(const struct wait *w, uint64_t now)
{
	switch (w->policy) {
	case WAIT_POLICY_NEVER:
		return false;
	case WAIT_POLICY_FIXED:
		return now - w->last_act <= w->fixed_ns;
	}
	/*
	 * Poll for a lone request only. With several out (a program with many threads, s2dsm's
	 * read of every page), answers come in a stream, the threads they wake need the CPUs,
	 * and the samples that chose polling (lone requests) say nothing about that case:
	 * measured on the PVM guest, s2dsm's pipelined read-all was 23 % slower than its
	 * blocking floor with polling there and 7-38 % faster than it never polling.
	 */
	/*
	 * A lone request's poll is bounded since the request began, which also bounds it since
	 * the last event (fault_polls()): a stream of unrelated events must not keep it polling
	 * for an answer that is late. A pending barrier's poll is bounded since the last event
	 * only: while this node's threads wait in a barrier, the requests other nodes send it
	 * in a stream (a reader of the data it published) keep it polling, so each is served
	 * without a wake-up; its own threads need no CPU meanwhile. Measured: a read miss whose owner
	 * waits in a barrier 59.8-60.2 us with the owner sleeping between requests, 45 us
	 * polling.
	 */
	/*
	 * Either poll ends for good when a yield shows that another thread wanted this CPU
	 * (wait_yielded()). Measured on the PVM guest, three nodes on two CPUs: a miss whose
	 * home shares the requester's CPU took 248 us with the home (waiting in a barrier) and
	 * the requester polling, 152 us with nobody polling.
	 */
	return fault_polls(w, now) || lingers(w, now) ||
	       (barrier_polls(w) && now - w->last_act <= bound(&w->barrier, 2));
}

/*
 * How long a yield to another thread may last before polling is worse than sleeping: what
 * sleeping costs more than polling, as measured (the medians' difference: a wake-up or two),
 * at least WAIT_YIELD_BUSY. While the poller is off its CPU, an answer that arrives waits for
 * it; a sleeper would have been woken at once. Measured where a wake-up from an idle vCPU
 * costs 70-400 us (KVM, EPYC family 25): the node's own application thread, touching the page
 * it was given and faulting on the next, took the CPU for 10-50 us per miss, and stopping
 * every poll on that made the default read miss 10-20x the forced-polling one.
 */
static uint64_t yield_limit(const struct wait_learn *l, unsigned mult)
{
	uint64_t gain = 0, b = bound(l, mult);

	if (l->n[WAIT_SPIN] >= WARM && l->n[WAIT_BLOCK] >= WARM &&
	    l->med[WAIT_BLOCK] > l->med[WAIT_SPIN])
		gain = l->med[WAIT_BLOCK] - l->med[WAIT_SPIN];
	if (gain < WAIT_YIELD_BUSY)
		gain = WAIT_YIELD_BUSY;
	/* Never more than the poll's own bound: a barrier's medians can be milliseconds
	 * apart (a slow peer), and a yield that long has outlasted the poll anyway. */
	return gain < b ? gain : b;
}

void wait_yielded(struct wait *w, uint64_t now, uint64_t ns, bool switched)
{
	if (w->policy != WAIT_POLICY_AUTO || ns < WAIT_YIELD_BUSY || !switched)
		return;
	if (ns >= yield_limit(&w->fault, 3))
		w->contended = true;
	/*
	 * A barrier's poll ends on contention only once the node serves other traffic in it (a
	 * reader of what it published): the thread that wants the CPU may be the requester it
	 * serves (on the PVM guest, a miss whose home polled in a barrier on the requester's CPU
	 * took 248 us, 152 with nobody polling). A node that only waits for the barrier to
	 * complete yields to threads of other nodes, which need the CPU to arrive and get it at
	 * once; sleeping instead lets the vCPU go idle when the last poller sleeps, and waking an
	 * idle vCPU costs 20-400 us on a KVM guest: measured there (AMD EPYC family 25, 8 nodes
	 * on 2 vCPUs), the 8-node barrier took 120-164 us ending polls on contention, 108-121
	 * not (docs/PERFORMANCE.md 3.10).
	 */
	if (w->bar_served && ns >= yield_limit(&w->barrier, 2))
		w->bar_contended = true;
	/* A linger serves the peers, not this node's own waits: only a yield that outlasted it
	 * says the CPU is taken (the kernel's softirq thread, handling this node's own packets,
	 * takes it for 10-200 us at a time on a loaded KVM guest). */
	if (lingers(w, now - ns) && ns >= linger_bound(w)) {
		w->linger = false;
		w->linger_skip = WAIT_LINGER_SKIP;
	}
}

void wait_idle(struct wait *w)
{
	w->out = 0;
}

void wait_sleeping(struct wait *w, uint64_t now)
{
	/*
	 * Polled past the bound (since the request began: events that kept coming do not
	 * extend it): the answer is late (or the count is wrong, a thread having joined
	 * another's request). Mark it so: the next request then starts a wait, and a
	 * sample, of its own instead of joining this one. The request still counts as a
	 * sample of polling when it is answered: a poller that loses its CPU (sched_yield() to
	 * a busy neighbour) and runs past its bound is exactly what makes polling the slower
	 * mode, and the medians must see it.
	 */
	if (w->policy == WAIT_POLICY_AUTO && w->out && w->mode == WAIT_SPIN &&
	    now - w->t_req > bound(&w->fault, 3))
		w->expired = true;
}

int wait_learnt(const struct wait *w, int kind)
{
	if (w->policy != WAIT_POLICY_AUTO)
		return w->policy == WAIT_POLICY_NEVER ? WAIT_BLOCK : WAIT_SPIN;
	return best(kind ? &w->barrier : &w->fault);
}

const char *wait_mode_name(const struct wait *w, int kind)
{
	return wait_learnt(w, kind) == WAIT_SPIN ? "poll" : "sleep";
}
