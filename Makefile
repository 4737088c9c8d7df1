# Bascule - build, test, bench, demo, install.
#   make                 build into build/
#   make test            install missing packages, run unit and end-to-end tests
#   make test SAN=1      the same under AddressSanitizer + UBSan (build-san/)
#   make demo            replicate a sample VM disk to a local secondary
#   make bench           print throughput figures against raw reads and rsync
#   make fuzz            run each libFuzzer harness FUZZ_SECONDS (60) under ASan+UBSan
#   make install PREFIX=/usr DESTDIR=/tmp/pkg
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
DESTDIR ?=
CC ?= cc
VERSION := 0.1.0

ifeq ($(SAN),1)
B ?= build-san
SANFLAGS := -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT := -O1
else
B ?= build
SANFLAGS :=
OPT := -O2
endif

PKGS := libsodium libzstd yaml-0.1 libsystemd jansson libxxhash libssh2 libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
override CFLAGS += -std=gnu11 $(OPT) -g $(WARN) -D_GNU_SOURCE -DBASCULE_VERSION='"$(VERSION)"' \
	-MMD -MP -Ilib -Itools $(PKG_CFLAGS) $(SANFLAGS)
override LDFLAGS += $(SANFLAGS)
LIBS := $(PKG_LIBS) -lrsync -lpthread -lm

LIB_SRC := $(wildcard lib/*.c)
DAEMON_SRC := $(wildcard daemon/*.c)
TOOLS_SRC := $(wildcard tools/*.c) $(wildcard failover/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
HELPER_SRC := $(wildcard tests/helpers/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/%.o)
TOOLS_OBJ := $(TOOLS_SRC:%.c=$(B)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
HELPER_BIN := $(HELPER_SRC:tests/helpers/%.c=$(B)/tests/%)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/tests/%)

all: $(B)/basculed $(B)/bascule

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libbascule.a: $(LIB_OBJ)
	ar rcs $@ $^

# The daemon's and the tools' modules, for unit tests (everything but main).
$(B)/libdaemon.a: $(filter-out $(B)/daemon/main.o,$(DAEMON_OBJ))
	ar rcs $@ $^

$(B)/libtools.a: $(filter-out $(B)/tools/bascule.o,$(TOOLS_OBJ))
	ar rcs $@ $^

$(B)/basculed: $(DAEMON_OBJ) $(B)/libbascule.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/bascule: $(TOOLS_OBJ) $(B)/libbascule.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libbascule.a $(B)/libdaemon.a $(B)/libtools.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Idaemon -Itools -Ifailover $(LDFLAGS) -o $@ $< $(B)/libdaemon.a $(B)/libtools.a \
		$(B)/libbascule.a $(LIBS) -lcmocka

$(B)/tests/%: tests/helpers/%.c $(B)/libbascule.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libbascule.a $(LIBS)

# Fuzz harnesses with a deterministic mutation driver (run by the test suite).
$(B)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/driver.c $(B)/failover/runbook.o $(B)/libbascule.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ifailover $(LDFLAGS) -o $@ $< tests/fuzz/driver.c $(B)/failover/runbook.o \
		$(B)/libbascule.a $(LIBS)

# The same harnesses under libFuzzer with coverage guidance, ASan and UBSan
# (clang; `scripts/deps.sh fuzz` installs it): make fuzz FUZZ_SECONDS=240.
# Recovery is off, so any sanitizer report fails the run; the input that
# triggered it is left as build-fuzz/HARNESS-crash-*: fix the bug and add the
# input to tests/fuzz/corpus/HARNESS/, where the suite's driver replays it.
FUZZ_SECONDS ?= 60
FZ := build-fuzz
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=gnu11 -g -O1 $(FUZZ_SAN) -D_GNU_SOURCE -DBASCULE_VERSION='"fuzz"' -MMD -MP \
	-Ilib -Ifailover $(PKG_CFLAGS)
FUZZ_HARNESS := $(FUZZ_SRC:tests/fuzz/%.c=$(FZ)/%)
FUZZ_OBJ := $(FUZZ_SRC:%.c=$(FZ)/%.o) $(LIB_SRC:%.c=$(FZ)/%.o) $(FZ)/failover/runbook.o
.SECONDARY: $(FUZZ_OBJ)

$(FZ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FZ)/fuzz_%: $(FZ)/tests/fuzz/fuzz_%.o $(LIB_SRC:%.c=$(FZ)/%.o) $(FZ)/failover/runbook.o
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lrsync -lpthread -lm

fuzz-build: deps-fuzz
	$(MAKE) $(FUZZ_HARNESS)

fuzz: fuzz-build
	@for h in $(FUZZ_HARNESS); do n=$${h#$(FZ)/fuzz_}; \
	  mkdir -p $(FZ)/corpus-$$n; echo "== fuzz_$$n for $(FUZZ_SECONDS) s"; \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=abort_on_error=1 \
	  $$h -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=$(FZ)/$$n- $(FZ)/corpus-$$n tests/fuzz/corpus/$$n || exit 1; done

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

deps-fuzz:
	@scripts/deps.sh fuzz

build-tests: all $(UNIT_BIN) $(HELPER_BIN) $(FUZZ_BIN)

# The README's test command.  Installs what is missing, then builds and runs
# everything (unit tests on cmocka, end-to-end tests with real processes).
test: deps-test
	$(MAKE) build-tests
	tests/run.sh $(B)

unit: build-tests
	tests/run.sh $(B) unit

demo: deps-test
	$(MAKE) all
	scripts/demo.sh $(B)

bench: deps-test
	$(MAKE) build-tests
	tests/bench/run.sh $(B)

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/bascule
	install -m 0755 $(B)/basculed $(DESTDIR)$(SBINDIR)/basculed
	install -m 0755 $(B)/bascule $(DESTDIR)$(BINDIR)/bascule
	install -m 0644 docs/man/bascule.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 docs/man/bascule.yaml.5 docs/man/runbook.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 docs/man/basculed.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 etc/bascule.yaml $(DESTDIR)$(SYSCONFDIR)/bascule/bascule.yaml.example
	install -m 0644 etc/runbook.yaml $(DESTDIR)$(SYSCONFDIR)/bascule/runbook.yaml.example
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 0644 etc/systemd/basculed.service $(DESTDIR)$(PREFIX)/lib/systemd/system/

clean:
	rm -rf build build-san $(FZ)

.PHONY: all deps deps-test deps-fuzz build-tests test unit demo bench install clean fuzz fuzz-build

-include $(shell find $(B) $(FZ) -name '*.d' 2>/dev/null)
