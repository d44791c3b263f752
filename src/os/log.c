/* SPDX-License-Identifier: MIT */
/*
 * log.c - the log sink: stderr by default, replaceable by the application.
 */
#include "os/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static udsm_log_func log_fn;
static void *log_arg;
static int log_max = -1; /* -1: not decided yet */

static int max_level(void)
{
	int m = __atomic_load_n(&log_max, __ATOMIC_RELAXED);

	if (m < 0) {
		const char *s = getenv("UDSM_LOG_LEVEL");

		m = UDSM_LOG_WARN;
		if (s && *s) {
			if (s[0] >= '0' && s[0] <= '9')
				m = atoi(s);
			else if (s[0] == 'e')
				m = UDSM_LOG_ERR;
			else if (s[0] == 'w')
				m = UDSM_LOG_WARN;
			else if (s[0] == 'i')
				m = UDSM_LOG_INFO;
			else if (s[0] == 'd')
				m = UDSM_LOG_DEBUG;
		}
		__atomic_store_n(&log_max, m, __ATOMIC_RELAXED);
	}
	return m;
}

UDSM_EXPORT void udsm_set_log_func(udsm_log_func fn, void *arg, int max)
{
	log_fn = fn;
	log_arg = arg;
	if (max > 0)
		__atomic_store_n(&log_max, max, __ATOMIC_RELAXED);
}

int ulog_enabled(int level)
{
	return level <= max_level();
}

void ulog(int level, const char *fmt, ...)
{
	static const char *const names[8] = { [3] = "error", [4] = "warning", [6] = "info",
					       [7] = "debug" };
	int saved = errno;
	char buf[512];
	va_list ap;

	if (!ulog_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (log_fn)
		log_fn(log_arg, level, buf);
	else
		fprintf(stderr, "udsm: %s: %s\n", level >= 0 && level < 8 && names[level] ?
			names[level] : "log", buf);
	errno = saved;
}
