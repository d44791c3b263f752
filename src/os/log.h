/* SPDX-License-Identifier: MIT */
/*
 * log.h - the library's logging: levels, a per-file prefix, a perror variant and a sink the
 * application can replace (udsm_set_log_func()). The library never writes to stdout.
 *
 * Each .c file defines LOG_PREFIX ("uffd: ") before including this header.
 */
#ifndef UDSM_LOG_H
#define UDSM_LOG_H

#include "udsm.h"

/** ulog_enabled() - whether messages of @level are kept (cheap; check before costly work). */
int ulog_enabled(int level);
/** ulog() - format and emit one line at @level. */
void ulog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifndef LOG_PREFIX
#define LOG_PREFIX ""
#endif

#define log_err(fmt, ...) ulog(UDSM_LOG_ERR, LOG_PREFIX fmt " (%s:%d)", ##__VA_ARGS__, __FILE__, __LINE__)
#define log_warn(fmt, ...) ulog(UDSM_LOG_WARN, LOG_PREFIX fmt, ##__VA_ARGS__)
#define log_info(fmt, ...) ulog(UDSM_LOG_INFO, LOG_PREFIX fmt, ##__VA_ARGS__)
#define log_debug(fmt, ...)                                                                    \
	do {                                                                                   \
		if (ulog_enabled(UDSM_LOG_DEBUG))                                              \
			ulog(UDSM_LOG_DEBUG, LOG_PREFIX fmt, ##__VA_ARGS__);                   \
	} while (0)
/* log_perror(): like log_err, with strerror(errno) appended. */
#define log_perror(fmt, ...) ulog(UDSM_LOG_ERR, LOG_PREFIX fmt ": %m (%s:%d)", ##__VA_ARGS__, __FILE__, __LINE__)

#endif /* UDSM_LOG_H */
