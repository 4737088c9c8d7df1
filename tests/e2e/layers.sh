# layers: the daemon reads as its architecture (docs/architecture.md, "The
# one-way rule").  From the object files the build made: which daemon/*.o
# calls a function another one defines (nm: undefined against defined
# symbols); that graph must have no cycle.  And no file of daemon/, nor
# tools/vault_recv.c, is over 1,000 lines.
. "$(dirname "$0")/../lib/common.sh"
ls "$BIN"/daemon/*.o >/dev/null 2>&1 || fail "no daemon objects in $BIN (make build-tests first)"
command -v nm >/dev/null || { echo "SKIP: no nm (binutils)"; exit 77; }
for o in "$BIN"/daemon/*.o; do
	n=$(basename "$o" .o)
	nm --defined-only -g "$o" | awk -v f="$n" '$2 ~ /^[TDBR]$/ { print "def", f, $3 }'
	nm --undefined-only -g "$o" | awk -v f="$n" '{ print "use", f, $2 }'
done > "$T/syms"
python3 - "$T/syms" > "$T/graph" <<'PY' || fail "call cycle between daemon files: $(cat "$T/graph")"
import sys
defs, uses = {}, {}
for line in open(sys.argv[1]):
    kind, f, sym = line.split()
    if kind == "def":
        defs[sym] = f
    else:
        uses.setdefault(f, set()).add(sym)
edges = {f: sorted({defs[s] for s in syms if s in defs and defs[s] != f}) for f, syms in uses.items()}
for f in set(defs.values()):
    edges.setdefault(f, [])
# Depth-first search; a back edge is a cycle.
state, stack, cycle = {}, [], None
def visit(f):
    global cycle
    state[f] = 1
    stack.append(f)
    for g in edges[f]:
        if cycle:
            return
        if state.get(g) == 1:
            cycle = stack[stack.index(g):] + [g]
            return
        if not state.get(g):
            visit(g)
    stack.pop()
    state[f] = 2
for f in sorted(edges):
    if not state.get(f) and not cycle:
        visit(f)
if cycle:
    print(" -> ".join(cycle))
    sys.exit(1)
for f in sorted(edges):
    print(f, "->", " ".join(edges[f]) or "(nothing)")
PY
note "daemon call graph, no cycle: $(tr '\n' ';' < "$T/graph")"
for f in "$ROOT"/daemon/*.c "$ROOT"/daemon/*.h "$ROOT"/tools/vault_recv.c; do
	n=$(wc -l < "$f")
	[ "$n" -le 1000 ] || fail "${f#$ROOT/} has $n lines (more than 1,000: a room of its own for a concern)"
done
note "no daemon/ file, nor tools/vault_recv.c, over 1,000 lines"
