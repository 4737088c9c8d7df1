/* main.c - basculed: load the configuration, open the state, run the loop.
 *
 *   basculed -c FILE                 run in the foreground (systemd Type=notify)
 *   basculed -c FILE --check-config  validate and exit */
#include "daemon.h"
#include "child.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "pgsource.h"
#include "spool.h"
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <fcntl.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "Usage: basculed [-c FILE] [--check-config] [-v]\n\n"
		   "Track changes in the disks of the configured groups and stream them, as\n"
		   "encrypted epochs, to every target.  Runs in the foreground.\n\n"
		   "  -c, --config FILE   configuration (default /etc/bascule/bascule.yaml)\n"
		   "      --check-config  validate the configuration (and the files it names), exit\n"
		   "      --print-keys    list every configuration key with its default, exit\n"
		   "  -v, --verbose       debug messages\n"
		   "  -h, --help          this help\n"
		   "  -V, --version       the version\n\n"
		   "Exit codes: 0 clean stop, 1 failure, 2 usage, 3 configuration, 4 key, 9 another\n"
		   "basculed holds the state directory.  See basculed(8), bascule.yaml(5).\n");
}

static void find_recv(struct daemon *d)
{
	char exe[PATH_MAX], cand[PATH_MAX + 32], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	snprintf(d->recv_path, sizeof(d->recv_path), "bascule");
	if (n <= 0)
		return;
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (!slash)
		return;
	*slash = 0;
	snprintf(cand, sizeof(cand), "%s/bascule", exe);
	if (access(cand, X_OK) == 0) {
		snprintf(d->recv_path, sizeof(d->recv_path), "%s", cand);
		return;
	}
	snprintf(cand, sizeof(cand), "%s/../bin/bascule", exe);
	if (access(cand, X_OK) == 0)
		snprintf(d->recv_path, sizeof(d->recv_path), "%s", cand);
}

static void on_hup_done(void *ctx, int r)
{
	if (r < 0)
		log_error("SIGHUP: %s", err_msg(r));
	sd_notify(0, "READY=1");
}

/* How long a stop waits for the running cuts told to stop (their workers
 * end at the next chunk, a QEMU source's view is removed over QMP). */
#define CUT_STOP_GRACE_USEC (10 * 1000000ULL)

static int on_stop_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct daemon *d = userdata;

	if (child_count(d))
		log_warn("stopping: %u children still running, leaving them", child_count(d));
	if (d->stop_cuts)
		log_warn("stopping: %u cuts did not stop within %llu s, leaving them", d->stop_cuts,
			 CUT_STOP_GRACE_USEC / 1000000);
	sd_event_exit(d->ev, 0);
	return 0;
}

/* End every session (BYE), tell the cuts to stop, let the children and
 * those cuts end, then leave the loop: child.c or epoch_cuts_done ends it
 * when the last one is gone, a timer at the latest.  A cut hung past
 * cut_timeout is not waited for (daemon_free leaves it). */
static void daemon_stop(struct daemon *d)
{
	if (d->stopping) {
		sd_event_exit(d->ev, 0);
		return;
	}
	d->stopping = true;
	control_close(d);
	d->httpd = httpd_free(d->httpd);
	for (uint32_t i = 0; i < d->n_targets; i++)
		target_close(d->targets[i]);
	pgsources_stop(d);
	epoch_stop(d);
	if ((!child_count(d) && !d->stop_cuts) ||
	    sd_event_add_time_relative(d->ev, NULL, CLOCK_MONOTONIC,
				       d->stop_cuts ? CUT_STOP_GRACE_USEC : 3 * CHILD_GRACE_USEC, 100000,
				       on_stop_timeout, d) < 0)
		sd_event_exit(d->ev, 0);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct daemon *d = userdata;

	if (si->ssi_signo == SIGHUP) {
		int r;
		sd_notify(0, "RELOADING=1");
		r = daemon_reload(d, on_hup_done, d);
		if (r != 1)
			on_hup_done(d, r);
		return 0;
	}
	log_info("stopping on signal %d", (int)si->ssi_signo);
	sd_notify(0, "STOPPING=1");
	daemon_stop(d);
	return 0;
}

/* A cut thread is done: finish it (queue its epoch), then a reload that
 * waited for the cuts. */
static int on_cut_done(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct daemon *d = userdata;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_error("cut eventfd: %s", strerror(errno));
	epoch_cuts_done(d);
	if (d->reload)
		daemon_reload_resume(d);
	return 0;
}

static int on_inotify(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct daemon *d = userdata;
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n = read(fd, buf, sizeof(buf));

	for (char *p = buf; n > 0 && p < buf + n;) {
		struct inotify_event *e = (struct inotify_event *)p;
		for (uint32_t i = 0; i < d->n_groups; i++)
			for (uint32_t k = 0; k < d->groups[i]->n_sources; k++)
				if (d->groups[i]->sources[k].wd == e->wd) {
					d->groups[i]->dirty = true;
					d->groups[i]->change_time = clock_now_usec();
				}
		p += sizeof(*e) + e->len;
	}
	return 0;
}

/* Once a second: throughputs, and a STATUS= line for systemctl status. */
static int on_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct daemon *d = userdata;
	uint32_t up = 0;
	double worst = 0;
	uint64_t now = clock_now_usec();

	for (uint32_t i = 0; i < d->n_targets; i++) {
		struct target *t = d->targets[i];
		t->rate = 0.7 * t->rate + 0.3 * (double)t->rate_bytes;
		t->rate_bytes = 0;
		up += t->state == T_READY;
		for (uint32_t k = 0; k < d->n_groups; k++) {
			uint64_t l = target_lag_usec(t, k, now);
			double lag = l == UINT64_MAX ? -1 : (double)l / 1e6;
			if (lag < 0 || lag > worst)
				worst = lag < 0 ? 1e9 : lag;
		}
	}
	if (worst >= 1e9)
		sd_notifyf(0, "STATUS=%u groups; %u of %u targets connected; a target has no epoch yet",
			   d->n_groups, up, d->n_targets);
	else
		sd_notifyf(0, "STATUS=%u groups; %u of %u targets connected; worst lag %.1fs",
			   d->n_groups, up, d->n_targets, worst);
	epoch_watchdog(d);
	daemon_free_retired(d);
	targets_tick(d);
	pgsources_tick(d);
	sd_event_source_set_time(s, usec + 1000000);
	sd_event_source_set_enabled(s, SD_EVENT_ON);
	return 0;
}

/* Test hook (tests/e2e/loopstall.sh): with BASCULE_TEST_STALL_MS=N set, one
 * event, 2 s after the start, holds the loop for N ms: the stall figures
 * must show it. */
static int on_test_stall(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 0 };
	long ms = atol(getenv("BASCULE_TEST_STALL_MS"));

	log_warn("test hook: holding the event loop for %ld ms", ms);
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
	return 0;
}

/* Test hook (tests/e2e/systemd.sh): with BASCULE_TEST_HANG_AFTER=N set, the
 * loop blocks after N seconds, so the watchdog must stop being fed. */
static int on_test_hang(sd_event_source *s, uint64_t usec, void *userdata)
{
	log_warn("test hook: hanging the event loop");
	for (;;)
		pause();
	return 0;
}

static int daemon_setup(struct daemon *d)
{
	char path[PATH_MAX + 32];
	sigset_t ss;
	int r;

	if ((r = fs_mkdir_p(d->cfg->state_dir, 0700)) < 0)
		return r;
	snprintf(path, sizeof(path), "%s/lock", d->cfg->state_dir);
	if ((r = fs_lock(path)) < 0)
		return err_set(r, "another basculed is using %s: %s", d->cfg->state_dir, err_msg(r));
	d->lock_fd = r;
	if ((r = sd_event_default(&d->ev)) < 0)
		return err_set(r, "cannot create the event loop: %s", strerror(-r));
	/* Blocked before any thread exists: signals come through the loop, and
	 * sd_event_add_child needs SIGCHLD blocked in every thread. */
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	sigaddset(&ss, SIGCHLD);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((r = sd_event_add_signal(d->ev, NULL, SIGTERM, on_signal, d)) < 0 ||
	    (r = sd_event_add_signal(d->ev, NULL, SIGINT, on_signal, d)) < 0 ||
	    (r = sd_event_add_signal(d->ev, NULL, SIGHUP, on_signal, d)) < 0)
		return err_set(-r, "cannot watch signals: %s", strerror(-r));
	d->on_epoch = targets_on_epoch;
	d->spool_floor = targets_floor;
	d->wal_ready = group_wal_ready;

	d->n_groups = (uint32_t)d->cfg->groups.n;
	d->groups = calloc(d->n_groups, sizeof(*d->groups));
	d->n_targets = (uint32_t)d->cfg->targets.n;
	d->targets = calloc(d->n_targets, sizeof(*d->targets));
	if (!d->groups || !d->targets)
		return -ENOMEM;
	for (uint32_t i = 0; i < d->n_groups; i++) {
		if (!(d->groups[i] = calloc(1, sizeof(struct group))))
			return -ENOMEM;
		if ((r = group_init(d, d->groups[i], CFG_GROUP(d->cfg, i))) < 0)
			return r;
		d->groups[i]->idx = i;
	}
	for (uint32_t i = 0; i < d->n_targets; i++) {
		if (!(d->targets[i] = calloc(1, sizeof(struct target))))
			return -ENOMEM;
		if ((r = target_init(d, d->targets[i], CFG_TARGET(d->cfg, i))) < 0)
			return r;
		d->targets[i]->idx = i;
	}

	d->cut_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (d->cut_efd < 0 || d->inotify_fd < 0)
		return -errno;
	if ((r = sd_event_add_io(d->ev, &d->cut_src, d->cut_efd, EPOLLIN, on_cut_done, d)) < 0 ||
	    (r = sd_event_add_io(d->ev, &d->inotify_src, d->inotify_fd, EPOLLIN, on_inotify, d)) < 0)
		return err_set(-r, "cannot watch the cut and inotify descriptors: %s", strerror(-r));
	for (uint32_t i = 0; i < d->n_groups; i++) {
		struct group *g = d->groups[i];
		for (uint32_t k = 0; k < g->n_sources; k++)
			if (!g->sources[k].pg)
				g->sources[k].wd = inotify_add_watch(d->inotify_fd, g->sources[k].cfg->disk,
								     IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB);
		if ((r = group_arm_timers(d, g)) < 0)
			return r;
	}
	d->ctl_fd = -1;
	if ((r = control_open(d)) < 0)
		return r;
	if (d->cfg->metrics_listen && (r = httpd_open(d, d->cfg->metrics_listen, &d->httpd)) < 0)
		return r;
	/* WATCHDOG=1 from the loop itself (half of WatchdogSec): a stuck loop
	 * stops the pings and systemd restarts the daemon. */
	if ((r = sd_event_set_watchdog(d->ev, true)) < 0)
		return err_set(-r, "cannot feed the systemd watchdog: %s", strerror(-r));
	if ((r = sd_event_add_time_relative(d->ev, &d->tick, CLOCK_MONOTONIC, 1000000, 100000, on_tick, d)) < 0)
		return err_set(-r, "cannot arm the 1 s tick: %s", strerror(-r));
	if (getenv("BASCULE_TEST_HANG_AFTER") &&
	    (r = sd_event_add_time_relative(d->ev, NULL, CLOCK_MONOTONIC,
					    (uint64_t)atoi(getenv("BASCULE_TEST_HANG_AFTER")) * 1000000ULL, 0,
					    on_test_hang, d)) < 0)
		return err_set(-r, "cannot arm the test hook: %s", strerror(-r));
	if (getenv("BASCULE_TEST_STALL_MS") &&
	    (r = sd_event_add_time_relative(d->ev, NULL, CLOCK_MONOTONIC, 2000000, 0, on_test_stall, d)) < 0)
		return err_set(-r, "cannot arm the test hook: %s", strerror(-r));
	for (uint32_t i = 0; i < d->n_targets; i++)
		target_start(d->targets[i]);
	return 0;
}

/* Free D.  True if a cut's thread was left running (a read that never
 * returned, epoch_cut_left): its group, the configuration and the cut
 * eventfd are then left as they are, and the caller ends the process
 * with _exit (as a kill would, once everything else is closed: nothing of
 * that cut is committed, its marks in the maps go to the next start's
 * cut; a QEMU source's view is removed by that cut). */
static bool daemon_free(struct daemon *d)
{
	bool left = false;

	for (uint32_t i = 0; d->targets && i < d->n_targets; i++)
		if (d->targets[i]) {
			target_free(d->targets[i]);
			free(d->targets[i]);
		}
	child_reap_all(d);
	daemon_reload_free(d);
	for (uint32_t i = 0; d->groups && i < d->n_groups; i++)
		if (d->groups[i] && epoch_cut_left(d->groups[i])) {
			log_warn("stopping: the cut of group %s still runs (a read that does not return): left to "
				 "the end of the process, not committed; the next start cuts again", d->groups[i]->name);
			left = true;
		} else if (d->groups[i]) {
			group_free(d->groups[i]);
			free(d->groups[i]);
		}
	if (left) {
		control_close(d);
		return true;
	}
	for (uint32_t i = 0; i < d->n_retired; i++) {
		group_free(d->retired[i]);
		free(d->retired[i]);
	}
	free(d->retired);
	for (uint32_t i = 0; i < d->n_old_cfgs; i++)
		config_free(d->old_cfgs[i]);
	free(d->old_cfgs);
	control_close(d);
	d->httpd = httpd_free(d->httpd);
	sd_event_source_disable_unref(d->tick);
	sd_event_source_disable_unref(d->cut_src);
	sd_event_source_disable_unref(d->inotify_src);
	if (d->cut_efd >= 0)
		close(d->cut_efd);
	if (d->inotify_fd >= 0)
		close(d->inotify_fd);
	free(d->groups);
	free(d->targets);
	sd_event_unref(d->ev);
	key_free(d->key);
	config_free(d->cfg);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	return false;
}

/* usec of CPU the calling thread has used. */
static uint64_t thread_cpu_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static long thread_sleeps(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nvcsw : 0;
}

/* sd_event_loop, with each dispatch timed (struct loop_stats). */
static int daemon_loop(struct daemon *d)
{
	int r, code = 0;

	for (;;) {
		uint64_t t0, c0, wall, own;
		long v0;

		if ((r = sd_event_prepare(d->ev)) == 0)
			r = sd_event_wait(d->ev, UINT64_MAX);
		if (r > 0) {
			t0 = clock_mono_usec();
			c0 = thread_cpu_usec();
			v0 = thread_sleeps();
			r = sd_event_dispatch(d->ev);
			wall = clock_mono_usec() - t0;
			/* Never slept: the wall time beyond its CPU time was the
			 * machine's other work, not this loop waiting. */
			own = thread_sleeps() == v0 ? thread_cpu_usec() - c0 : wall;
			if (own > wall)
				own = wall;
			d->loop.dispatches++;
			if (wall > d->loop.max_wall_usec)
				d->loop.max_wall_usec = wall;
			if (own > d->loop.max_usec)
				d->loop.max_usec = own;
			if (own > 100000) {
				d->loop.over_100ms++;
				log_warn("the event loop was held for %.0f ms by one event", (double)own / 1000.0);
			}
		}
		if (r < 0)
			return r;
		if (sd_event_get_state(d->ev) == SD_EVENT_FINISHED)
			break;
	}
	if ((r = sd_event_get_exit_code(d->ev, &code)) < 0)
		return r;
	return code;
}

/* Descriptors 0 to 2 always open (on /dev/null if need be): a pipe or a
 * socket that landed there would be taken for stdin or stderr. */
static void std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
			int n = open("/dev/null", O_RDWR);
			if (n >= 0 && n != fd) {
				dup2(n, fd);
				close(n);
			}
		}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "print-keys", no_argument, NULL, 'P' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	const char *file = "/etc/bascule/bascule.yaml";
	struct daemon d;
	bool check = false;
	int c, verbose = 0, r;

	while ((c = getopt_long(argc, argv, "c:vhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c': file = optarg; break;
		case 'C': check = true; break;
		case 'P': config_print_reference(); return EXIT_OK;
		case 'v': verbose++; break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': printf("basculed %s\n", BASCULE_VERSION); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	std_fds();
	/* Keys and per-session stream keys live in this process: no core
	 * dumps, no ptrace by the same user. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	log_init("basculed", verbose);
	memset(&d, 0, sizeof(d));
	d.lock_fd = d.cut_efd = d.inotify_fd = d.ctl_fd = d.ctl_spare_fd = -1;
	pthread_mutex_init(&d.io_lock, NULL);
	if ((r = config_load(file, &d.cfg)) < 0) {
		/* 3 for the file, 4 for a key it names (missing, unsafe mode). */
		fprintf(stderr, "basculed: %s\n", err_msg(r));
		return err_exit_code(r) == EXIT_KEY ? EXIT_KEY : r == -ENOMEM ? EXIT_FAIL : EXIT_CONFIG;
	}
	if ((r = key_load(d.cfg->key, &d.key)) < 0) {
		fprintf(stderr, "basculed: %s\n", err_msg(r));
		config_free(d.cfg);
		return EXIT_KEY;
	}
	if ((r = daemon_relay_user(d.cfg, &d.relay_uid, &d.relay_gid)) < 0) {
		fprintf(stderr, "basculed: %s\n", err_msg(r));
		key_free(d.key);
		config_free(d.cfg);
		return EXIT_CONFIG;
	}
	if (check) {
		printf("%s: OK (%zu groups, %zu targets)\n", file, d.cfg->groups.n, d.cfg->targets.n);
		key_free(d.key);
		config_free(d.cfg);
		return EXIT_OK;
	}
	d.scan_threads = d.cfg->scan_threads ? (unsigned)d.cfg->scan_threads
					      : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	find_recv(&d);
	if ((r = daemon_setup(&d)) < 0) {
		log_error("%s", err_msg(r));
		if (daemon_free(&d))
			_exit(EXIT_FAIL);
		return err_exit_code(r) == EXIT_OK ? EXIT_FAIL : err_exit_code(r);
	}
	log_info("started: %u groups, %u targets, state in %s", d.n_groups, d.n_targets,
		 d.cfg->state_dir);
	sd_notify(0, "READY=1\nSTATUS=replicating");
	r = daemon_loop(&d);
	if (daemon_free(&d)) {
		fflush(NULL);
		_exit(r < 0 ? EXIT_FAIL : EXIT_OK);
	}
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}
