#!/bin/sh
# SPDX-License-Identifier: MIT
#
# check-core-purity.sh - the protocol core (src/core) must stay pure C: no system headers beyond
# the C library's, no threads, no system calls. The simulator and the unit tests rely on it:
# they run the exact code of the node runtime without a kernel underneath.
#
# Usage: check-core-purity.sh [CORE_DIR]   (default: src/core next to this script's tree)
# Exit: 0 clean, 1 a violation (each one printed as file:line: what), 2 usage error.
set -u

dir=${1:-$(dirname "$0")/../../src/core}
if [ ! -d "$dir" ]; then
	echo "check-core-purity: no directory $dir" >&2
	exit 2
fi
files=$(find "$dir" -type f \( -name '*.c' -o -name '*.h' \) | sort)
if [ -z "$files" ]; then
	echo "check-core-purity: no sources in $dir" >&2
	exit 2
fi

# Drop comments (// and /* */, also across lines): a mention in a comment is fine.
strip() {
	sed -e 's://.*$::' "$1" |
	awk '{ line = $0; out = "";
	       while (length(line)) {
		       if (c) { i = index(line, "*/"); if (!i) { line = ""; break }
				c = 0; line = substr(line, i + 2) }
		       else { i = index(line, "/*"); if (!i) { out = out line; line = ""; break }
			      out = out substr(line, 1, i - 1); c = 1; line = substr(line, i + 2) }
	       }
	       print out }'
}

scan() { # $1: file; prints "file:line:text: what" for every violation
	strip "$1" | grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(sys|linux|asm|arpa|netinet|net)/' |
		sed "s|^|$1:|; s|\$|: system header|"
	strip "$1" | grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(pthread|unistd|fcntl|poll|signal|threads|sched|semaphore|dlfcn|netdb|termios|spawn|syscall)\.h>' |
		sed "s|^|$1:|; s|\$|: OS header|"
	strip "$1" | grep -nE '(^|[^A-Za-z0-9_.>])(pthread_[a-z_]+|syscall|ioctl|read|write|pread|pwrite|readv|writev|open|openat|close|mmap|munmap|mprotect|madvise|socket|connect|accept|accept4|bind|listen|send|sendmsg|recv|recvmsg|poll|epoll_[a-z_]+|select|fork|exec[lv]p?e?|sleep|usleep|nanosleep|clock_gettime|gettimeofday|time|kill|raise|signal|sigaction|getenv|exit|_exit|fopen|fread|fwrite|fclose|printf|puts|fputs|perror)[[:space:]]*\(' |
		sed "s|^|$1:|; s|\$|: system call or I/O|"
}

out=$(for f in $files; do scan "$f"; done)
if [ -n "$out" ]; then
	echo "$out"
	echo "check-core-purity: src/core must not use the OS (see the lines above)" >&2
	exit 1
fi
echo "check-core-purity: $(echo "$files" | wc -l) files clean"
exit 0
