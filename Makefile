# Bascule - build, test, bench, demo, install.
#   make                 build into build/
#   make test            install missing packages, run unit and end-to-end tests
#   make test SAN=1      the same under AddressSanitizer + UBSan (build-san/)
#   make build-tests TSAN=1   under ThreadSanitizer (build-tsan/), for the drill's threads
#   make demo            replicate a sample VM disk to a local secondary
#   make fuzz            run each libFuzzer harness FUZZ_SECONDS (60) under ASan+UBSan
#   make bench           figures against raw reads, lseek(SEEK_DATA) ways, rsync, rdiff, sftp, borg, restic, pgBackRest, pg_receivewal,
#                        bascule ship against pg_dump|zstd, restic, borg, and the S3
#                        vault against aws s3 cp and rclone on a real Ceph RGW; the
#                        scale section (scan against QEMU bitmap mode) and the QEMU lag
#                        (~18 min; installs borgbackup, restic, pgbackrest, awscli and rclone if missing)
#   make install         programs, man pages, systemd units, examples (PREFIX=/usr/local)
#   make uninstall       remove exactly what make install wrote (same PREFIX, DESTDIR)
#
# Install layout (README "Install"): everything under PREFIX, nothing else.
# The configuration directory is /etc/bascule whatever the prefix: the
# programs' defaults name it (bascule -c, basculed -c, recv --key), as
# Debian's sshd names /etc/ssh.  So there is no SYSCONFDIR: make install
# writes nothing to /etc; the examples go to DOCDIR/examples and the operator
# creates /etc/bascule (docs/secondary-setup.md).  The unit goes where systemd
# looks for units of the prefix (/usr/local/lib/systemd/system and
# /usr/lib/systemd/system are both on its search path); for another prefix,
# say UNITDIR=/etc/systemd/system.  The unit and the authorized_keys example
# are generated from their .in templates with the installed paths (PREFIX,
# not DESTDIR, which only stages the files for a package).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/bascule
UNITDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR ?=
CC ?= cc
VERSION := 0.1.0
# End-to-end tests run this many at once (tests/run.sh -j): they mostly wait.
TEST_JOBS ?= 2

ifeq ($(SAN),1)
B ?= build-san
SANFLAGS := -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT := -O1
else ifeq ($(TSAN),1)
B ?= build-tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
OPT := -O1
else
B ?= build
SANFLAGS :=
OPT := -O2
endif

PKGS := libsodium libzstd yaml-0.1 libsystemd jansson libxxhash libssh2 libcurl libmicrohttpd libpq libnbd libxml-2.0 libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
override CFLAGS += -std=gnu11 $(OPT) -g $(WARN) -D_GNU_SOURCE -DBASCULE_VERSION='"$(VERSION)"' \
	-MMD -MP $(PKG_CFLAGS) $(SANFLAGS)
override LDFLAGS += $(SANFLAGS)
LIBS := $(PKG_LIBS) -lrsync -lpthread -lm

# The one-way rule of docs/architecture.md, kept by the compiler: a file
# sees the headers of its own directory and of those below it, no others.
#   lib/ ◀── daemon/        lib/ ◀── failover/ ◀── tools/
# (a folder inside a directory, e.g. tools/replica/, takes its directory's).
INC_lib := -Ilib
INC_daemon := -Ilib -Idaemon
INC_failover := -Ilib -Ifailover
INC_tools := -Ilib -Ifailover -Itools
INC_tests := -Ilib -Idaemon -Ifailover -Itools
# The include flags of the source file with stem $* (e.g. tools/cmd_sync).
INC = $(INC_$(firstword $(subst /, ,$*)))

LIB_SRC := $(wildcard lib/*.c)
DAEMON_SRC := $(wildcard daemon/*.c)
FAILOVER_SRC := $(wildcard failover/*.c)
TOOLS_SRC := $(wildcard tools/*.c) $(wildcard tools/replica/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
HELPER_SRC := $(wildcard tests/helpers/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/%.o)
FAILOVER_OBJ := $(FAILOVER_SRC:%.c=$(B)/%.o)
TOOLS_OBJ := $(TOOLS_SRC:%.c=$(B)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
HELPER_BIN := $(HELPER_SRC:tests/helpers/%.c=$(B)/tests/%)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/tests/%)

all: $(B)/basculed $(B)/bascule

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) -c -o $@ $<

$(B)/libbascule.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

# The orchestrator (runbook, drill, checks, report): a library of the tools.
$(B)/libfailover.a: $(FAILOVER_OBJ)
	rm -f $@ && ar rcs $@ $^

# The daemon's and the tools' modules, for unit tests (everything but main).
$(B)/libdaemon.a: $(filter-out $(B)/daemon/main.o,$(DAEMON_OBJ))
	rm -f $@ && ar rcs $@ $^

$(B)/libtools.a: $(filter-out $(B)/tools/bascule.o,$(TOOLS_OBJ))
	rm -f $@ && ar rcs $@ $^

$(B)/basculed: $(DAEMON_OBJ) $(B)/libbascule.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/bascule: $(TOOLS_OBJ) $(B)/libfailover.a $(B)/libbascule.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libbascule.a $(B)/libdaemon.a $(B)/libtools.a $(B)/libfailover.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC_tests) $(LDFLAGS) -o $@ $< $(B)/libdaemon.a $(B)/libtools.a \
		$(B)/libfailover.a $(B)/libbascule.a $(LIBS) -lcmocka

$(B)/tests/%: tests/helpers/%.c $(B)/libbascule.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC_lib) $(LDFLAGS) -o $@ $< $(B)/libbascule.a $(LIBS)

# Fuzz harnesses with a deterministic mutation driver (run by the test suite).
$(B)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/driver.c $(B)/failover/runbook.o $(B)/libbascule.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC_tests) $(LDFLAGS) -o $@ $< tests/fuzz/driver.c $(B)/failover/runbook.o \
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
	$(PKG_CFLAGS)
FUZZ_HARNESS := $(FUZZ_SRC:tests/fuzz/%.c=$(FZ)/%)
FUZZ_OBJ := $(FUZZ_SRC:%.c=$(FZ)/%.o) $(LIB_SRC:%.c=$(FZ)/%.o) $(FZ)/failover/runbook.o
.SECONDARY: $(FUZZ_OBJ)

$(FZ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(INC) -fsanitize=fuzzer-no-link -c -o $@ $<

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

deps-bench:
	@scripts/deps.sh bench

build-tests: all $(UNIT_BIN) $(HELPER_BIN) $(FUZZ_BIN)

# The README's test command.  Installs what is missing, then builds and runs
# everything (unit tests on cmocka, end-to-end tests with real processes).
test: deps-test
	$(MAKE) build-tests
	tests/run.sh -j $(TEST_JOBS) $(B)

unit: build-tests
	tests/run.sh $(B) unit

demo: deps-test
	$(MAKE) all
	scripts/demo.sh $(B)

bench: deps-bench
	$(MAKE) build-tests
	tests/bench/run.sh $(B)

# The installed files, for install and uninstall alike.
MAN_PAGES := man1/bascule.1 man5/bascule.yaml.5 man5/runbook.5 man8/basculed.8
EXAMPLES := bascule.yaml runbook.yaml runbook-hybrid.yaml intake-s3.yaml icinga-bascule.conf authorized_keys.example bascule-alerts.yml ship.yaml
# the hybrid PRA's client job (docs/hybrid.md): bascule ship, nightly; the
# operator's intake metrics for Prometheus (docs/hybrid.md, "Metrics"); the
# s3:// vault's daily lock extension (docs/vault.md).  A .service comes from
# etc/systemd/NAME.service.in (paths substituted), a .timer as it is.
UNITS := basculed.service bascule-ship.service bascule-ship.timer \
	bascule-intake-metrics.service bascule-intake-metrics.timer \
	bascule-vault-extend-locks.service bascule-vault-extend-locks.timer
SUBST := sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SBINDIR@|$(SBINDIR)|g'

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(DOCDIR)/examples
	install -m 0755 $(B)/basculed $(DESTDIR)$(SBINDIR)/basculed
	install -m 0755 $(B)/bascule $(DESTDIR)$(BINDIR)/bascule
	for m in $(MAN_PAGES); do install -m 0644 docs/man/$${m#*/} $(DESTDIR)$(MANDIR)/$$m || exit 1; done
	for u in $(filter %.service,$(UNITS)); do \
		$(SUBST) etc/systemd/$$u.in > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	install -m 0644 $(addprefix etc/systemd/,$(filter %.timer,$(UNITS))) $(DESTDIR)$(UNITDIR)/
	install -m 0644 etc/bascule.yaml etc/runbook.yaml etc/runbook-hybrid.yaml etc/intake-s3.yaml etc/prometheus/bascule-alerts.yml \
		$(DESTDIR)$(DOCDIR)/examples/
	$(SUBST) etc/icinga/bascule.conf.in > $(DESTDIR)$(DOCDIR)/examples/icinga-bascule.conf
	$(SUBST) etc/authorized_keys.example.in > $(DESTDIR)$(DOCDIR)/examples/authorized_keys.example
	# ship.yaml stays usable as it is in etc/: its crontab line names the default prefix
	sed 's|/usr/local/bin/bascule|$(BINDIR)/bascule|g' etc/ship.yaml > $(DESTDIR)$(DOCDIR)/examples/ship.yaml
	chmod 0644 $(DESTDIR)$(DOCDIR)/examples/authorized_keys.example \
		$(DESTDIR)$(DOCDIR)/examples/icinga-bascule.conf $(DESTDIR)$(DOCDIR)/examples/ship.yaml
	@echo "installed $(BINDIR)/bascule, $(SBINDIR)/basculed, $(UNITDIR)/basculed.service" \
		"(and bascule-ship.service/.timer, the hybrid-PRA client's nightly job;" \
		"bascule-intake-metrics.service/.timer, the intake's metrics for Prometheus;" \
		"bascule-vault-extend-locks.service/.timer, the s3:// vault's daily lock extension);" \
		"examples in $(DOCDIR)/examples; configuration goes to /etc/bascule (see README, Install)"

# Removes what install wrote and its own directory; leaves /etc/bascule (the
# operator's configuration and keys) and the shared directories (bin, man1…).
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/basculed $(DESTDIR)$(BINDIR)/bascule \
		$(UNITS:%=$(DESTDIR)$(UNITDIR)/%) $(MAN_PAGES:%=$(DESTDIR)$(MANDIR)/%) \
		$(EXAMPLES:%=$(DESTDIR)$(DOCDIR)/examples/%)
	@rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true

clean:
	rm -rf build build-san build-tsan $(FZ)

.PHONY: all deps deps-test deps-fuzz deps-bench build-tests test unit demo bench install uninstall clean fuzz fuzz-build

-include $(shell find $(B) $(FZ) -name '*.d' 2>/dev/null)
