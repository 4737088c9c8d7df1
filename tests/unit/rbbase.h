/* rbbase.h - the two-site runbook the tests of the runbook and of the
 * report start from (test_runbook.c, test_report.c). */
#pragma once

static const char base[] =
	"name: test\n"
	"objectives: {rto: 1h, rpo: 0s}\n"
	"hosts:\n"
	"  - name: a\n"
	"    url: local\n"
	"  - name: b\n"
	"    url: ssh://drill@192.0.2.10:2222\n"
	"    identity: /etc/bascule/id\n"
	"    known_hosts: /etc/bascule/known_hosts\n"
	"primary: {host: a}\n"
	"secondary: {host: b, replica_root: /srv/replica}\n"
	"services:\n"
	"  - name: web\n"
	"    group: web\n"
	"    after: [db, cache]\n"
	"    start: start web\n"
	"    stop: stop web\n"
	"  - name: db\n"
	"    group: db\n"
	"    start: start db\n"
	"    stop: stop db\n"
	"    checks:\n"
	"      - name: pg\n"
	"        tcp: 10.0.0.1:5432\n"
	"  - name: cache\n"
	"    after: [db]\n"
	"    start: start cache\n";
