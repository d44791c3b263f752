/* SPDX-License-Identifier: MIT */
/*
 * cpu.c - see cpu.h.
 */
#include "cpu.h"

#include <sys/resource.h>

bool cpu_switched_out(uint64_t *seen)
{
	struct rusage ru;
	uint64_t n;
	bool first = !*seen;

	if (getrusage(RUSAGE_THREAD, &ru))
		return true; /* cannot tell: assume the worst, stop polling */
	n = (uint64_t)ru.ru_nivcsw + 1; /* + 1: 0 in @seen means "never asked" */
	if (n == *seen)
		return false;
	*seen = n;
	return !first;
}
