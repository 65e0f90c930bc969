# p11vault — one entry point: make, make run, make test, make bench, make style.
CC      ?= cc
BUILD   := build
PKGS    := libmicrohttpd jansson sqlite3 libssl libcrypto gnutls p11-kit-1 libseccomp libgfshare libpq
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wformat=2 \
	-Wshadow -Wpedantic -Wconversion -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE \
	-I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS_BASE := -pie -Wl,-z,relro,-z,now
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ldl -lpthread
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Debian packages the build and the tests need (installed by `make deps`).
APT_PKGS := build-essential pkg-config softhsm2 libsofthsm2 opensc \
	libmicrohttpd-dev libjansson-dev libsqlite3-dev libssl-dev \
	libgnutls28-dev libp11-kit-dev libseccomp-dev libgfshare-dev gnutls-bin openssl curl \
	clang clang-format clang-tidy wrk sqlite3 systemd clevis tang-common \
	fiu-utils libfiu-dev python3-azure azure-cli \
	libpq-dev postgresql haproxy

LIB_SRCS := $(wildcard hsm/*.c) $(wildcard vault/*.c) $(wildcard policy/*.c) \
	$(filter-out api/main.c,$(wildcard api/*.c))
HDRS     := $(wildcard */*.h)
OBJS     := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
SAN_OBJS := $(LIB_SRCS:%.c=$(BUILD)/san/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/san/tests/%)

.PHONY: all deps run test bench fuzz torture style clean
FUZZ_SECONDS ?= 60
all: $(BUILD)/p11vault

# Installs only what is missing; `apt-get update` once before installing.
deps:
	@missing=""; for p in $(APT_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BUILD)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -c $< -o $@

$(BUILD)/san/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) -c $< -o $@

$(BUILD)/p11vault: $(OBJS) api/main.c $(HDRS)
	$(CC) $(CFLAGS_BASE) $(LDFLAGS_BASE) api/main.c $(OBJS) $(LIBS) -o $@

$(BUILD)/san/p11vault: $(SAN_OBJS) api/main.c $(HDRS)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) $(LDFLAGS_BASE) api/main.c $(SAN_OBJS) $(LIBS) -o $@

$(BUILD)/san/tests/%: tests/unit/%.c $(SAN_OBJS) tests/unit/t.h $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) $(LDFLAGS_BASE) $< $(SAN_OBJS) $(LIBS) -o $@

# The allocation-failure torture build (tests/torture/README.md): the
# sanitizer objects, with every allocator our own code calls wrapped.
TORTURE_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=reallocarray,--wrap=strdup,--wrap=strndup
$(BUILD)/san/tests/torture: tests/torture/torture.c tests/torture/alloc.c tests/torture/alloc.h \
		tests/fuzz/fuzz_env.h tests/unit/softhsm_setup.h $(SAN_OBJS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) -Wno-missing-field-initializers -Wno-empty-body \
		$(LDFLAGS_BASE) $(TORTURE_WRAP) tests/torture/torture.c \
		tests/torture/alloc.c $(SAN_OBJS) $(LIBS) -o $@

tests/api/node_modules/.package-lock.json: tests/api/package.json tests/api/package-lock.json
	cd tests/api && npm ci --no-audit --no-fund --loglevel=error

run: deps $(BUILD)/p11vault
	@if [ ! -f var/p11vault.conf ]; then $(BUILD)/p11vault init --data ./var; fi
	@echo "admin credential: ./var/admin.json   CA certificate: ./var/tls/ca.pem"
	exec $(BUILD)/p11vault serve --data ./var

test: deps
	$(MAKE) $(BUILD)/p11vault $(BUILD)/san/p11vault $(UNIT_BINS) $(BUILD)/san/tests/torture tests/api/node_modules/.package-lock.json
	@bash tests/run.sh

bench: deps $(BUILD)/p11vault
	@bash tests/bench/run.sh

# clang-format (.clang-format) and clang-tidy (.clang-tidy) over the tree;
# `bash tests/style.sh --fix` reformats it.
style: deps
	@bash tests/style.sh

# libFuzzer (clang, ASan+UBSan): each target FUZZ_SECONDS over its corpus
fuzz: deps
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS)

# every allocation of every torture target fails once (tests/torture/)
torture: deps
	$(MAKE) $(BUILD)/san/tests/torture
	@bash tests/torture/run.sh full

clean:
	rm -rf $(BUILD)
