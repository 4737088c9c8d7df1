# tests/lib/oldbuild.sh - the previous on-disk format's version, for the
# upgrade tests (source after common.sh).
#   old_build      sets OLD_BUILD to a build of commit $OLD_COMMIT (default
#                  6092189: block map BSCBMAP1, replica map BSCRMAP1, digests
#                  of version 1, replica state BSCSTAT3, group state
#                  BSCGRST1): $OLD_BUILD if given, else built from the
#                  history once per build directory (BUILD/upgrade-old-COMMIT,
#                  ~1 min with -j2); exits 77 (skip) only when neither is
#                  there (a tree without its git history).
OLD_COMMIT=${OLD_COMMIT:-6092189}
old_build() {
	if [ -z "${OLD_BUILD:-}" ]; then
		OLD_BUILD=$BIN/upgrade-old-$OLD_COMMIT
		if [ ! -x "$OLD_BUILD/basculed" ]; then
			git -C "$ROOT" cat-file -e "$OLD_COMMIT^{commit}" 2>/dev/null || {
				echo "SKIP: no git history holding $OLD_COMMIT (the previous version) here, and no OLD_BUILD"
				exit 77
			}
			# Built aside, then renamed: a run that is cut leaves no half build.
			mkdir -p "$T/old"
			git -C "$ROOT" archive "$OLD_COMMIT" | tar -x -C "$T/old"
			note "building the previous version ($OLD_COMMIT) into $OLD_BUILD"
			make -C "$T/old" -j2 all SAN= TSAN= B=build > "$T/old-build.log" 2>&1 ||
				fail "cannot build $OLD_COMMIT: $(tail -5 "$T/old-build.log")"
			rm -rf "$OLD_BUILD.tmp.$$"
			mv "$T/old/build" "$OLD_BUILD.tmp.$$"
			# Another run may have put one in place meanwhile: either will do.
			mv -T "$OLD_BUILD.tmp.$$" "$OLD_BUILD" 2>/dev/null || rm -rf "$OLD_BUILD.tmp.$$"
		fi
	fi
	[ -x "$OLD_BUILD/basculed" ] && [ -x "$OLD_BUILD/bascule" ] ||
		fail "OLD_BUILD=$OLD_BUILD holds no basculed and bascule"
	OLD_BUILD=$(cd "$OLD_BUILD" && pwd)
}
