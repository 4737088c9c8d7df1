# promcheck.awk - a strict reader of the Prometheus text exposition format
# (version 0.0.4) for the tests: every sample's family has HELP and TYPE
# first, names and labels are well-formed, values are numbers, counters end
# in _total, no series appears twice.  Prints "N samples" or the first error.
function bad(msg) { print "line " NR ": " msg ": " $0; err = 1; exit 1 }
BEGIN { err = 0; n = 0 }
/^# HELP / {
	if ($3 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*$/) bad("bad metric name in HELP")
	help[$3] = 1; next
}
/^# TYPE / {
	if (!($3 in help)) bad("TYPE before HELP")
	if ($4 !~ /^(counter|gauge|histogram|summary|untyped)$/) bad("bad type")
	if ($3 in type) bad("family typed twice")
	type[$3] = $4
	if ($4 == "counter" && $3 !~ /_total$/) bad("counter not ending in _total")
	next
}
/^#/ { next }
/^$/ { bad("empty line") }
{
	line = $0
	if (!match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*/)) bad("bad sample name")
	name = substr(line, 1, RLENGTH); rest = substr(line, RLENGTH + 1)
	if (!(name in type)) bad("sample without TYPE")
	labels = ""
	if (substr(rest, 1, 1) == "{") {
		if (!match(rest, /^\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*)?\}/)) bad("bad labels")
		labels = substr(rest, 1, RLENGTH); rest = substr(rest, RLENGTH + 1)
	}
	if (rest !~ /^ (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]?Inf|NaN)( -?[0-9]+)?$/) bad("bad value")
	if ((name labels) in seen) bad("duplicate series")
	seen[name labels] = 1; n++
}
END { if (!err) print n " samples" }
