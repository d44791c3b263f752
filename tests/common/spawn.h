/* SPDX-License-Identifier: MIT */
/*
 * spawn.h - start a test process with pipes on its stdin and stdout (header-only, for the
 * test harnesses: tests/integration/cluster.c, tests/chaos/chaos.c).
 */
#ifndef UDSM_TEST_SPAWN_H
#define UDSM_TEST_SPAWN_H

#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

/*
 * spawn_piped() - fork and exec @argv with its stdin and stdout on pipes; our ends go to
 * @in (write to its stdin) and @out (read its stdout). If @extra_fd >= 0 it becomes the
 * child's descriptor 3. Returns the pid, or -1.
 */
static inline pid_t spawn_piped(char **argv, int *in, int *out, int extra_fd)
{
	int ip[2], op[2];
	pid_t pid;

	if (pipe(ip))
		return -1;
	if (pipe(op)) {
		close(ip[0]);
		close(ip[1]);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		dup2(ip[0], 0);
		dup2(op[1], 1);
		close(ip[0]);
		close(ip[1]);
		close(op[0]);
		close(op[1]);
		if (extra_fd >= 0 && extra_fd != 3) {
			dup2(extra_fd, 3);
			close(extra_fd);
		}
		execv(argv[0], argv);
		perror(argv[0]);
		_exit(2);
	}
	close(ip[0]);
	close(op[1]);
	if (pid < 0) {
		close(ip[1]);
		close(op[0]);
		return -1;
	}
	*in = ip[1];
	*out = op[0];
	return pid;
}

#endif /* UDSM_TEST_SPAWN_H */
