# udsm - the two commands of the README, and a few more.
#
#   make          install missing build dependencies (as root; otherwise print the command),
#                 then build into build/
#   make test     build, then run every suite: unit, sim, examples, integration, s2dsm, bench
#                 and fuzz (two libFuzzer targets built with clang, 20 s each) in build/, and
#                 unit, sim, examples and integration again under ASan+UBSan in build-asan/,
#                 and unit, sim and integration under ThreadSanitizer in build-tsan/;
#                 ends with "N passed, N failed, N skipped"
#   make test-tsan  only the ThreadSanitizer run in build-tsan/ (see src/os/tsan.h)
#   make demo     a 3-node cluster on this machine, pages moving, MSI states printed
#   make bench    udsm-bench with default settings, then s2dsm-bench (the assignment's
#                 workload, s2dsm remote read-all, against its floor)
#   make apps     the five applications of apps/ on 1, 2 and 4 nodes of this machine, each
#                 checked against its serial reference: a table of times, speed-ups and pages
#                 and bytes moved per node (docs/APPS.md); fails on any wrong result
#   make sim-long the deterministic simulation with millions of schedules
#   make chaos    a soak run: nodes stopped, continued, killed and leaving at random while
#                 the others do verifiable work (CHAOS_ARGS="--seconds 300 --seed S")
#   make install  meson install (libudsm, udsm.h, udsm.pc, s2dsm, udsm-bench)

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
MESON_OPTS ?=
DEB_PKGS   := meson ninja-build pkg-config libcmocka-dev libsodium-dev python3 python3-pexpect \
              iproute2 clang-14 libclang-rt-14-dev libtsan2 openmpi-bin \
              slurm-wlm munge

.PHONY: all deps build test test-build test-asan test-tsan demo bench apps chaos sim-long install \
	clean

all: build

deps:
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
		else \
			echo "missing packages:$$missing"; \
			echo "run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
		fi; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD_ASAN)/build.ninja:
	meson setup $(BUILD_ASAN) -Db_sanitize=address,undefined -Db_lundef=false -Dwerror_ci=true $(MESON_OPTS)

$(BUILD_TSAN)/build.ninja:
	meson setup $(BUILD_TSAN) -Db_sanitize=thread -Db_lundef=false -Dwerror_ci=true $(MESON_OPTS)

# The ThreadSanitizer run: a report makes the reporting process exit 66, which fails its test.
# The DSM's own data flow (service-thread reads of pages the kernel write-protected) is
# annotated in src/os/tsan.h; nothing is suppressed.
TSAN_TEST = TSAN_OPTIONS=second_deadlock_stack=1 meson test -C $(BUILD_TSAN) --print-errorlogs \
		--suite unit --suite sim --suite integration --timeout-multiplier 3

test: build $(BUILD_ASAN)/build.ninja $(BUILD_TSAN)/build.ninja
	@rc=0; \
	meson test -C $(BUILD) --print-errorlogs || rc=1; \
	ninja -C $(BUILD_ASAN) >/dev/null || rc=1; \
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	meson test -C $(BUILD_ASAN) --print-errorlogs --suite unit --suite sim --suite examples \
		--suite integration --timeout-multiplier 3 || rc=1; \
	ninja -C $(BUILD_TSAN) >/dev/null || rc=1; \
	$(TSAN_TEST) || rc=1; \
	sh scripts/ci-summary.sh $(BUILD)/meson-logs/testlog.json $(BUILD_ASAN)/meson-logs/testlog.json \
		$(BUILD_TSAN)/meson-logs/testlog.json; \
	exit $$rc

test-tsan: deps $(BUILD_TSAN)/build.ninja
	@rc=0; \
	ninja -C $(BUILD_TSAN) >/dev/null || rc=1; \
	$(TSAN_TEST) || rc=1; \
	sh scripts/ci-summary.sh $(BUILD_TSAN)/meson-logs/testlog.json; \
	exit $$rc

demo: build
	@sh scripts/demo.sh $(BUILD)

bench: build
	$(BUILD)/bench/udsm-bench
	$(BUILD)/bench/s2dsm-bench --s2dsm $(BUILD)/tools/s2dsm --floor $(BUILD)/bench/s2dsm-floor

apps: build
	@bash scripts/apps.sh $(BUILD)

# CHAOS_ARGS, e.g. "--nodes 6 --seconds 300 --seed 42"
chaos: build
	$(BUILD)/tests/chaos/udsm-chaos --node $(BUILD)/tests/chaos/udsm-chaos-node $(CHAOS_ARGS)

sim-long: build
	$(BUILD)/tests/unit/test_sim --long

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN)
