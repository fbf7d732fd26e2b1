# handoff: `make run` sets up, builds and starts the proxy; `make test` runs every test.
# Both install missing Debian packages first (as root, or through sudo).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
TSAN_BUILD ?= build-tsan
CONFIG     ?= examples/handoff.conf
CA_DIR     ?= state/ca
JOBS       ?= $(shell nproc)

# What building needs, then what the tests start (real clients and servers).
BUILD_PACKAGES = build-essential cmake pkg-config libuv1-dev libssl-dev libcmocka-dev \
                 node-llhttp libinih-dev libjansson-dev libcrypt-dev \
                 libkrb5-dev libsystemd-dev libnghttp2-dev
TEST_PACKAGES  = clang libclang-rt-14-dev curl openssl python3 kamailio kamailio-tls-modules nftables \
                 coturn nodejs chromium fonts-liberation \
                 krb5-kdc krb5-admin-server krb5-user haproxy \
                 nginx nghttp2-client


.PHONY: all deps test-deps build asan tsan fuzz run test unit integration clean format

all: build

deps:
	@./.ci/install-packages $(BUILD_PACKAGES)

test-deps: deps
	@./.ci/install-packages $(TEST_PACKAGES)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DHANDOFF_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)

# ThreadSanitizer for what worker loops share with other threads: the credential pool (a
# check's thread never touches a session: SPEC 4.1), revocation fetches shared by the
# workers, the leaf cache, the OCSP record.
TSAN_TESTS = proxy_cred_pool_test proxy_revocation_fetch_test certs_leaf_cache_test certs_ocsp_test
tsan:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DHANDOFF_TSAN=ON
	cmake --build $(TSAN_BUILD) -j$(JOBS) --target $(TSAN_TESTS)

fuzz:
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DHANDOFF_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target policy_fuzz detect_fuzz framing_fuzz names_fuzz \
	  proxy_protocol_fuzz ocsp_fuzz http_head_fuzz h2_fuzz

run: deps build
	@if [ ! -f $(CA_DIR)/ca.key ]; then $(BUILD)/proxy/handoff ca init $(CA_DIR); fi
	@echo "handoff: CA certificate $(CA_DIR)/ca.crt (trust it as the README says)"
	exec $(BUILD)/proxy/handoff -c $(CONFIG)

# gcc build: every test; clang ASan+UBSan build: every test again; then the fuzzers.
test: test-deps build asan tsan fuzz
	cd $(BUILD) && ctest --output-on-failure -j2
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j2
	cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure \
	  -R '^(proxy_cred_pool|proxy_revocation_fetch|certs_leaf_cache|certs_ocsp)$$'
	cd $(FUZZ_BUILD) && ctest --output-on-failure -L fuzz -j2

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
