#!/bin/sh
# SPDX-License-Identifier: MIT
#
# run.sh SRCDIR OUTDIR TARGET SECONDS - build the libFuzzer target fuzz/TARGET.c with clang
# (-fsanitize=fuzzer,address,undefined) against the protocol core, then run it for SECONDS
# on the committed seed corpus fuzz/corpus/TARGET. New inputs go to a scratch directory, never
# into the committed corpus. A crash leaves its reproducer in OUTDIR (crash-*) and fails.
# Exit: 0 no finding, 1 a finding or a build error, 77 skipped (no clang or no libFuzzer
# runtime: `make deps` installs clang-14 and libclang-rt-14-dev).
set -u
src=$1 out=$2 target=$3 secs=$4
skip() { echo "SKIP: $*"; exit 77; }

cc=""
for c in clang-14 clang; do
	command -v "$c" >/dev/null 2>&1 && { cc=$c; break; }
done
[ -n "$cc" ] || skip "clang is not installed (make deps installs clang-14)"
command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libsodium ||
	skip "libsodium-dev is not installed (make deps installs it)"
mkdir -p "$out" || exit 1
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
	>"$out/probe.c"
"$cc" -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" >"$out/probe.log" 2>&1 ||
	skip "$cc cannot link libFuzzer (install libclang-rt-14-dev): $(head -c 300 "$out/probe.log")"

bin="$out/$target"
# shellcheck disable=SC2046
"$cc" -std=gnu11 -g -O1 -D_GNU_SOURCE -Wall -Wno-unused-parameter \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$src/include" -I"$src/src" \
	"$src/fuzz/$target.c" "$src"/src/core/*.c \
	$(pkg-config --cflags --libs libsodium) -o "$bin" || { echo "FAIL: cannot build $target"; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT INT TERM
cd "$out" || exit 1
echo "running $target for $secs s on $(ls "$src/fuzz/corpus/$target" | wc -l) seed inputs"
# libFuzzer's own exit status for a finding is 77, which meson reads as "skipped": a crash
# must fail the test.
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
	-error_exitcode=1 -timeout_exitcode=1 \
	-print_final_stats=1 -artifact_prefix="$out/" "$scratch" "$src/fuzz/corpus/$target"
rc=$?
[ $rc = 0 ] || echo "FAIL: $target found a crash; reproduce with: $bin $out/crash-*"
exit $rc
