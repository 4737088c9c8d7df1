/* pgrpo - bench helper: the RPO of a PostgreSQL protection, sampled.
 * Every INTERVAL ms it commits one numbered row on the primary (table
 * bench_rpo, created if missing), notes the time COMMIT returned and the
 * commit's WAL position, then polls until the protection holds that row;
 * the sample is the time between the two.  One line per sample on stdout:
 * the delay in seconds.  What "holds" means is the mode:
 *   --flush-of APP       the primary's pg_stat_replication.flush_lsn of the
 *                        walsender with application_name APP has passed the
 *                        commit (pg_receivewal --synchronous; basculed with
 *                        synchronous: remote, whose flush is the replicas' ack)
 *   --row-on CONNINFO    the row is readable on a hot standby
 *   --segment-in DIR     a file named after the commit's WAL segment exists
 *                        in DIR (pgBackRest's archive/STANZA/15-1/XXXX dir:
 *                        SEGMENT-SHA1.gz; the segment's 16 first hex digits
 *                        name the subdirectory)
 * A sample that is not held within 120 s is an error (exit 1).
 *   pgrpo PRIMARY_CONNINFO SAMPLES INTERVAL_MS MODE ARG */
#include <dirent.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static PGconn *connect_or_die(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pgrpo: cannot connect (%s): %s", conninfo, PQerrorMessage(c));
		exit(1);
	}
	return c;
}

/* One row of one column, or NULL (the message on stderr) */
static char *one(PGconn *c, const char *sql, int quiet)
{
	PGresult *r = PQexec(c, sql);
	char *v = NULL;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		v = strdup(PQgetvalue(r, 0, 0));
	else if (PQresultStatus(r) != PGRES_TUPLES_OK && !quiet)
		fprintf(stderr, "pgrpo: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return v;
}

static int segment_in(const char *dir, const char *seg)
{
	char sub[4096];
	DIR *d;
	struct dirent *e;
	int found = 0;
	snprintf(sub, sizeof(sub), "%s/%.16s", dir, seg);
	if (!(d = opendir(sub)))
		return 0;
	while (!found && (e = readdir(d)))
		found = !strncmp(e->d_name, seg, 24) && e->d_name[24] == '-';
	closedir(d);
	return found;
}

/* "X/Y" as a byte position */
static unsigned long long lsn_of(const char *s)
{
	unsigned int hi, lo;
	return s && sscanf(s, "%X/%X", &hi, &lo) == 2 ? ((unsigned long long)hi << 32) | lo : 0;
}

struct sample {
	long long n;
	unsigned long long lsn;
	char *seg;
	double t0;
	int held;
};

int main(int argc, char **argv)
{
	PGconn *p, *q = NULL;
	int samples, interval, made = 0, done = 0, i;
	const char *mode, *arg;
	struct sample *s;
	double last = 0;
	long long base = (long long)time(NULL) * 1000;

	if (argc != 6) {
		fprintf(stderr, "usage: pgrpo PRIMARY_CONNINFO SAMPLES INTERVAL_MS "
				"--flush-of APP|--row-on CONNINFO|--segment-in DIR\n");
		return 2;
	}
	samples = atoi(argv[2]);
	interval = atoi(argv[3]);
	mode = argv[4];
	arg = argv[5];
	if (samples < 1 || interval < 1 || !(s = calloc((size_t)samples, sizeof(*s))))
		return fprintf(stderr, "pgrpo: SAMPLES and INTERVAL_MS must be positive\n"), 2;
	if (strcmp(mode, "--row-on") && strcmp(mode, "--flush-of") && strcmp(mode, "--segment-in"))
		return fprintf(stderr, "pgrpo: unknown mode %s\n", mode), 2;
	p = connect_or_die(argv[1]);
	PQclear(PQexec(p, "CREATE TABLE IF NOT EXISTS bench_rpo (n bigint PRIMARY KEY, t timestamptz DEFAULT now())"));
	if (!strcmp(mode, "--row-on"))
		q = connect_or_die(arg);
	/* Commits every INTERVAL, and polls what the protection holds every 2 ms
	 * for all samples not held yet (a segment-shipping tool holds many at once). */
	while (done < samples) {
		char sql[512], *v;
		unsigned long long pos = 0;
		long long maxn = -1;

		if (made < samples && now() - last >= interval / 1000.0) {
			struct sample *m = &s[made];
			m->n = base + made;
			snprintf(sql, sizeof(sql), "INSERT INTO bench_rpo (n) VALUES (%lld) RETURNING n", m->n);
			if (!(v = one(p, sql, 0)))
				return 1;
			free(v);
			m->t0 = last = now();	/* autocommit: COMMIT has returned */
			if (!(v = one(p, "SELECT pg_current_wal_insert_lsn()", 0)))
				return 1;
			m->lsn = lsn_of(v);
			if (!strcmp(mode, "--segment-in")) {
				snprintf(sql, sizeof(sql), "SELECT pg_walfile_name('%s')", v);
				m->seg = one(p, sql, 0);
			}
			free(v);
			made++;
		}
		if (!strcmp(mode, "--flush-of")) {
			snprintf(sql, sizeof(sql), "SELECT flush_lsn FROM pg_stat_replication WHERE application_name = '%s'", arg);
			v = one(p, sql, 1);
			pos = lsn_of(v);
			free(v);
		} else if (q) {
			v = one(q, "SELECT max(n) FROM bench_rpo", 1);
			maxn = v ? atoll(v) : -1;
			free(v);
		}
		for (i = done; i < made; i++) {
			struct sample *m = &s[i];
			if (!m->held)
				m->held = m->seg ? segment_in(arg, m->seg) : q ? m->n <= maxn : m->lsn <= pos;
			if (!m->held && now() - m->t0 > 120) {
				fprintf(stderr, "pgrpo: row %lld not held after 120 s\n", m->n);
				return 1;
			}
			if (m->held && m->t0 > 0) {
				printf("%.4f\n", now() - m->t0);
				m->t0 = 0;
			}
		}
		fflush(stdout);
		while (done < made && s[done].held)
			free(s[done++].seg);
		usleep(2000);
	}
	free(s);
	if (q)
		PQfinish(q);
	PQfinish(p);
	return 0;
}
