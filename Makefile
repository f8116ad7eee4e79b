# The two commands a new user runs: `make demo` (main job) and `make test` (test suite).
# Both install missing apt packages first, then configure and build (CMake + Ninja, Release).
BUILD_DIR ?= build
CONFIG    ?= experiments/configs/demo.yaml

.PHONY: all setup configure build test test-long demo bench install clean

all: build

setup:
	./scripts/setup

configure: setup
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: configure
	cmake --build $(BUILD_DIR)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --label-exclude long

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
