# The two commands a new user runs: `make demo` (main job) and `make test` (test suite).
# Both install missing apt packages first, then configure and build (CMake + Ninja, Release).
BUILD_DIR ?= build
CONFIG    ?= experiments/configs/demo.yaml
# ctest runs this many tests at once (one per core).
CTEST_JOBS ?= $(shell nproc)

.PHONY: all setup configure build test test-long test-sanitize test-libtorch2 demo bench install clean

all: build

setup:
	./scripts/setup

configure: setup
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: configure
	cmake --build $(BUILD_DIR)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --label-exclude long -j$(CTEST_JOBS)

# The optimizer, Hessian and in-process distributed tests built with AddressSanitizer + UBSan
# (CI runs this too; tests that start the CLI are left out, the sanitized build has none).
SANITIZE_DIR ?= build-sanitize
test-sanitize: setup
	cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release -DBLOCKOPT_SANITIZE=ON
	cmake --build $(SANITIZE_DIR) --target blockopt_tests
	cd $(SANITIZE_DIR) && ASAN_OPTIONS=detect_stack_use_after_return=1:strict_init_order=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 ./blockopt_tests --gtest_filter='Optim*:Hessian*:DistributedTest.*'

# The build and `make test` against LibTorch 2.x, in a cached Debian trixie chroot (root;
# scripts/libtorch2 says how; BLOCKOPT_TRIXIE_ROOT picks the chroot).
test-libtorch2: setup
	./scripts/libtorch2

# Slow experiments (paper-size configs) kept out of `make test`.
test-long: build
	cd $(BUILD_DIR) && ctest --output-on-failure --label-regex long

demo: build
	./$(BUILD_DIR)/blockopt run $(CONFIG)

bench: build
	./$(BUILD_DIR)/blockopt bench

install: build
	cmake --install $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR)
