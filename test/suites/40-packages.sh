#!/usr/bin/env bash
# runs: root
# How users get it: the PGXN release and the Debian packages.
#
# - PGXN: make dist writes stripe_idem-<version>.zip from git's HEAD; one top
#   folder, nothing built in it, META.json valid against Meta Spec v1 at the
#   control file's version (test/lib/pgxn_meta_check.pl); the unpacked zip
#   builds out of tree and installs (into a staging root).
# - Debian: dpkg-buildpackage builds postgresql-NN-stripe-idem for 15 on this
#   machine, for 17 and 18 in an overlay on their chroots (apt-get build-dep
#   there; the shared chroots themselves are never changed). Each package is
#   then installed with apt on a system without the server development
#   files (15: the pristine bookworm chroot of the fresh-machine check; 17,
#   18: an overlay of their chroot with postgresql-server-dev-NN purged), a
#   server with the library preloaded runs the regression and isolation
#   suites against it (test/lib/installed_check.sh, as debian/tests does),
#   and the package is purged: no file dpkg -L listed may be left.
#
# Needs root (apt, chroots, overlays): test/run_tests.sh runs it as root,
# outside the per-major runs, and reads its TAP. STRIPE_IDEM_MAJORS picks
# the majors (default 15 17 18); a major with no reachable chroot is a skip.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
source "$here/test/lib/tap.sh"
source "$here/test/lib/majors.sh"
source "$here/test/lib/chroot.sh"

# step SECONDS_VAR COMMAND...: run, timed, output to the log
elapsed() { echo "$(($(date +%s) - $1)) s"; }

[ "$(id -u)" = 0 ] || skip_all "needs root (apt, chroots)"

work=$(mktemp -d /var/tmp/stripe_idem_packages.XXXXXX)
# The build tests run a server as another user, which must read the build.
chmod 755 "$work"
overlays=()
overlay_up() { # overlay_up BASE RUN: RUN is a writable throwaway view of BASE
	local base=$1 run=$2 dir
	dir=$(chroot_dir "$run")
	overlay_down "$run"
	mkdir -p "$dir" "$dir.upper" "$dir.work"
	overlays+=("$run")
	if ! mount -t overlay overlay -o "lowerdir=$(chroot_dir "$base"),upperdir=$dir.upper,workdir=$dir.work" "$dir" 2>/dev/null; then
		cp -a "$(chroot_dir "$base")/." "$dir/" || return 1
	fi
	# Downloaded packages are kept between runs, per base chroot.
	mkdir -p "$CHROOT_CACHE/$base.apt-archives/partial" "$dir/var/cache/apt/archives"
	mount --bind "$CHROOT_CACHE/$base.apt-archives" "$dir/var/cache/apt/archives"
}
overlay_down() {
	local dir
	dir=$(chroot_dir "$1")
	chroot_umount "$1"
	mountpoint -q "$dir/var/cache/apt/archives" && umount -l "$dir/var/cache/apt/archives"
	mountpoint -q "$dir" && umount -l "$dir"
	rm -rf --one-file-system "$dir" "$dir.upper" "$dir.work"
	return 0
}
cleanup() {
	local r
	for r in "${overlays[@]}"; do overlay_down "$r"; done
	chroot_umount_all
	rm -rf "$work"
}
trap cleanup EXIT

# The tree as it is (committed or not), without build outputs: what the
# packages are built from.
copy_tree() {
	mkdir -p "$1"
	tar -C "$here" --exclude=.git --exclude=node_modules --exclude='*.o' --exclude='*.so' \
		--exclude='*.bc' --exclude=results --exclude=tmp_check --exclude='build-*' \
		--exclude='debian/.debhelper' --exclude='debian/postgresql-*-stripe-idem' \
		-cf - . | tar -C "$1" -xf -
}

version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$here/stripe_idem.control")
debversion=$(cd "$here" && dpkg-parsechangelog -S Version)
majors=${STRIPE_IDEM_MAJORS:-$SI_TESTED_MAJORS}
echo "# stripe_idem $version, Debian version $debversion, majors $majors"

# ---- PGXN
echo "# == PGXN: make dist"
start=$(date +%s)
mkdir -p "$work/pgxn"
if make -s -C "$work/pgxn" -f "$here/Makefile" dist >"$work/pgxn/dist.log" 2>&1; then
	zip=$(ls "$work/pgxn"/stripe_idem-*.zip 2>/dev/null | head -n 1)
	check "make dist writes stripe_idem-$version.0.zip" test "$(basename "${zip:-none}")" = "stripe_idem-$version.0.zip"
else
	cat "$work/pgxn/dist.log"
	not_ok "make dist"
	zip=""
fi
if [ -n "$zip" ]; then
	top=stripe_idem-$version.0
	check "every entry of the zip is under $top/" test -z "$(unzip -Z1 "$zip" | grep -v "^$top/")"
	check "the zip holds no build output" test -z "$(unzip -Z1 "$zip" | grep -E '\.(o|so|bc)$|/results/|/tmp_check/|\.zip$')"
	check "the zip holds what git holds at HEAD" test "$(unzip -Z1 "$zip" | grep -v '/$' | sed "s|^$top/||" | sort)" = "$(git -C "$here" ls-files | sort)"
	(cd "$work/pgxn" && unzip -q "$zip")
	# one assertion per rule of Meta Spec v1 the file must meet
	tap_from "META.json (PGXN Meta Spec v1, at $version.0)" perl "$here/test/lib/pgxn_meta_check.pl" "$work/pgxn/$top" "$version"
	mkdir -p "$work/pgxn/build" "$work/pgxn/root"
	if make -C "$work/pgxn/build" -f "$work/pgxn/$top/Makefile" PG_CONFIG=/usr/lib/postgresql/$SI_HOST_MAJOR/bin/pg_config >"$work/pgxn/build.log" 2>&1 &&
		make -C "$work/pgxn/build" -f "$work/pgxn/$top/Makefile" PG_CONFIG=/usr/lib/postgresql/$SI_HOST_MAJOR/bin/pg_config \
			install DESTDIR="$work/pgxn/root" >>"$work/pgxn/build.log" 2>&1; then
		check "the unpacked zip builds out of tree and installs the library, control file and $version script" \
			test -f "$work/pgxn/root/usr/lib/postgresql/$SI_HOST_MAJOR/lib/stripe_idem.so" -a \
			-f "$work/pgxn/root/usr/share/postgresql/$SI_HOST_MAJOR/extension/stripe_idem.control" -a \
			-f "$work/pgxn/root/usr/share/postgresql/$SI_HOST_MAJOR/extension/stripe_idem--$version.sql"
	else
		tail -n 30 "$work/pgxn/build.log"
		not_ok "the unpacked zip builds out of tree and installs"
	fi
fi
echo "# PGXN: $(elapsed "$start")"

# ---- Debian: build
mkdir -p "$work/debs"
build_log() { tail -n 40 "$1" | sed 's/^/#   /'; }
for major in $majors; do
	start=$(date +%s)
	if [ "$major" = "$SI_HOST_MAJOR" ]; then
		echo "# == building postgresql-$major-stripe-idem on this machine"
		src=$work/deb$major/stripe-idem
		copy_tree "$src"
		(cd "$src" && PG_SUPPORTED_VERSIONS=$major pg_buildext updatecontrol &&
			PG_SUPPORTED_VERSIONS=$major dpkg-buildpackage -us -uc -b) >"$work/build$major.log" 2>&1
		rc=$?
		cp "$work/deb$major"/postgresql-$major-stripe-idem_*.deb "$work/debs/" 2>/dev/null
	else
		name=$(si_chroot_name "$major")
		if [ -z "$name" ]; then
			skip "postgresql-$major-stripe-idem" "no Debian release with PostgreSQL $major is reachable"
			continue
		fi
		echo "# == building postgresql-$major-stripe-idem in an overlay on chroot $name"
		if ! chroot_ensure "$name" "$(si_chroot_suite "$major")" $(si_chroot_packages "$major") >"$work/chroot$major.log" 2>&1; then
			build_log "$work/chroot$major.log"
			not_ok "chroot $name for PostgreSQL $major"
			continue
		fi
		run=$name.pkgbuild-$$
		overlay_up "$name" "$run"
		rdir=$(chroot_dir "$run")
		copy_tree "$rdir/build/stripe-idem"
		chroot_run "$run" bash -c "cd /build/stripe-idem && apt-get update -qq &&
			apt-get build-dep -y -qq ./ >/tmp/build-dep.log 2>&1 || { tail -n 30 /tmp/build-dep.log; exit 1; }
			PG_SUPPORTED_VERSIONS=$major pg_buildext updatecontrol &&
			PG_SUPPORTED_VERSIONS=$major dpkg-buildpackage -us -uc -b" >"$work/build$major.log" 2>&1
		rc=$?
		cp "$rdir/build"/postgresql-$major-stripe-idem_*.deb "$work/debs/" 2>/dev/null
		overlay_down "$run"
	fi
	deb=$work/debs/postgresql-${major}-stripe-idem_${debversion}_amd64.deb
	if [ "$rc" = 0 ] && [ -f "$deb" ]; then
		ok "dpkg-buildpackage -b: $(basename "$deb") ($(elapsed "$start"))"
		grep -q "All [0-9]* tests passed" "$work/build$major.log" &&
			echo "# the build's own installcheck (dh_pgxs_test, library preloaded): $(grep -c "All [0-9]* tests passed" "$work/build$major.log") suites passed"
	else
		build_log "$work/build$major.log"
		not_ok "dpkg-buildpackage -b for PostgreSQL $major (exit $rc, $(elapsed "$start"))"
	fi
done

# ---- Debian: install, test, purge on a system without the server dev files
for major in $majors; do
	deb=$work/debs/postgresql-${major}-stripe-idem_${debversion}_amd64.deb
	pkg=postgresql-$major-stripe-idem
	[ -f "$deb" ] || { skip "$pkg: install, test and purge" "it was not built"; continue; }
	if [ "$major" = "$SI_HOST_MAJOR" ]; then
		base=bookworm-fresh
		if ! chroot_ensure "$base" bookworm $SI_FRESH_PACKAGES >"$work/chroot-fresh.log" 2>&1; then
			build_log "$work/chroot-fresh.log"
			not_ok "the bookworm chroot of a new machine"
			continue
		fi
	else
		base=$(si_chroot_name "$major")
	fi
	start=$(date +%s)
	run=$base.pkginstall-$$
	echo "# == $pkg on $base without postgresql-server-dev-$major"
	overlay_up "$base" "$run"
	rdir=$(chroot_dir "$run")
	cp "$deb" "$rdir/root/"
	mkdir -p "$rdir/root/src/test"
	cp -a "$here/sql" "$here/expected" "$rdir/root/src/"
	cp -a "$here/test/specs" "$here/test/expected" "$here/test/regress_schedule" "$here/test/isolation_schedule" \
		"$here/test/regress.conf" "$here/test/lib" "$rdir/root/src/test/"
	chroot_run "$run" sh -c "dpkg -l 'postgresql-server-dev-*' 2>/dev/null | grep -q '^ii' &&
		apt-get purge -y -qq 'postgresql-server-dev-*' >/dev/null 2>&1; true"
	check "$pkg: the system has no server development files" \
		test ! -e "$rdir/usr/include/postgresql/$major/server/postgres.h" -a -x "$rdir/usr/lib/postgresql/$major/bin/postgres"
	# make test's per-major runs make install into the shared chroots: what
	# they left is no package's, and goes before the package comes.
	rm -rf "$rdir/usr/lib/postgresql/$major/lib/stripe_idem.so" "$rdir/usr/lib/postgresql/$major/lib/bitcode/stripe_idem"* \
		"$rdir/usr/share/postgresql/$major/extension/stripe_idem"*
	check "$pkg: no stripe_idem file on the system before the install" \
		test -z "$(find "$rdir/usr/lib/postgresql" "$rdir/usr/share/postgresql" -name '*stripe_idem*' 2>/dev/null)"
	update=""
	if [ "$major" = "$SI_HOST_MAJOR" ]; then
		# A machine kept up to date also has bookworm-updates and
		# bookworm-security, whose server the package built here against it
		# requires (pg_buildext's minor_versions: postgresql-15 (>> 15.20));
		# apt brings it along.
		cat >"$rdir/etc/apt/sources.list.d/updates.list" <<-EOF
		deb $CHROOT_MIRROR bookworm-updates main
		deb ${CHROOT_MIRROR%/debian}/debian-security bookworm-security main
		EOF
		update="apt-get update -qq && "
	fi
	install_cmd="apt-get install -y -qq --no-install-recommends /root/$(basename "$deb")"
	if chroot_run "$run" sh -c "$update$install_cmd || { apt-get update -qq && $install_cmd; }" >"$work/install$major.log" 2>&1; then
		ok "apt-get install ./$(basename "$deb") ($(elapsed "$start"))"
	else
		build_log "$work/install$major.log"
		not_ok "apt-get install ./$(basename "$deb")"
		overlay_down "$run"
		continue
	fi
	files=$(chroot_run "$run" dpkg -L "$pkg")
	for f in "/usr/lib/postgresql/$major/lib/stripe_idem.so" "/usr/share/postgresql/$major/extension/stripe_idem.control" \
		"/usr/share/postgresql/$major/extension/stripe_idem--$version.sql"; do
		check "$pkg holds $f" grep -qx "$f" <<<"$files"
	done
	t_start=$(date +%s)
	chroot_run "$run" sh /root/src/test/lib/installed_check.sh "$major" /root/src >"$work/check$major.log" 2>&1
	rc=$?
	grep -aE '^(test |ok |not ok |== | *All |.*tests? failed)' "$work/check$major.log" | sed 's/^/#   /'
	[ "$rc" = 0 ] || build_log "$work/check$major.log"
	check "$pkg: regression and isolation suites pass against the installed package, library preloaded ($(elapsed "$t_start"))" test "$rc" = 0
	p_start=$(date +%s)
	chroot_run "$run" apt-get purge -y -qq "$pkg" >"$work/purge$major.log" 2>&1
	rc=$?
	left=""
	while read -r f; do
		[ -n "$f" ] && [ "$f" != /. ] || continue
		# Directories other packages share (/usr/lib/postgresql/NN/lib) stay.
		if [ -e "$rdir$f" ] && { [ ! -d "$rdir$f" ] || [[ "$f" == *stripe?idem* ]]; }; then left="$left $f"; fi
	done <<<"$files"
	[ -z "$left" ] || echo "# left behind:$left"
	check "apt-get purge $pkg leaves none of its $(grep -c . <<<"$files") paths behind ($(elapsed "$p_start"))" \
		test "$rc" = 0 -a -z "$left"
	check "$pkg is not installed after the purge" \
		test -z "$(chroot_run "$run" dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -w installed)"
	overlay_down "$run"
	echo "# $pkg: install, test and purge in $(elapsed "$start")"
done
done_testing
