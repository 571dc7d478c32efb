# Debian chroots for the PostgreSQL majors the host does not have, and for
# the fresh-machine check. Source this file as root.
#
#   chroot_ensure NAME SUITE PACKAGES...   create or reuse $CHROOT_CACHE/NAME
#   chroot_mount NAME / chroot_umount NAME  /proc and /dev while in use
#   chroot_run NAME CMD...                  run CMD inside, mounted around it
#
# The chroots live in a cache directory of the machine, never in the
# checkout, and are reused: a chroot is complete when its marker file holds
# the package list it was made with; one without (an interrupted build, a
# changed list) is removed and built again. Builds are serialised with a
# lock, so two runs never debootstrap into the same directory.
#
# Every mount made here is recorded and undone by chroot_umount_all, which
# the caller runs from its EXIT trap, so a failure never leaves a mount
# behind.

CHROOT_CACHE=${STRIPE_IDEM_CHROOT_CACHE:-/var/cache/stripe_idem/chroots}
CHROOT_MIRROR=${STRIPE_IDEM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CHROOT_MOUNTED=()

chroot_dir() { echo "$CHROOT_CACHE/$1"; }

chroot_mount() {
	local dir
	dir=$(chroot_dir "$1")
	if ! mountpoint -q "$dir/proc"; then
		mount -t proc proc "$dir/proc" || return 1
		CHROOT_MOUNTED+=("$dir/proc")
	fi
	# /dev with what is mounted under it (/dev/shm for the servers' dynamic
	# shared memory, /dev/pts); rslave, so that unmounting it here can never
	# propagate back to the host's /dev.
	if ! mountpoint -q "$dir/dev"; then
		mount --rbind /dev "$dir/dev" || return 1
		mount --make-rslave "$dir/dev"
		CHROOT_MOUNTED+=("$dir/dev")
	fi
}

chroot_umount_dir() {
	local m
	for m in "$1/dev" "$1/proc"; do
		mountpoint -q "$m" && umount -R -l "$m"
	done
	return 0
}

chroot_umount() { chroot_umount_dir "$(chroot_dir "$1")"; }

chroot_umount_all() {
	local m
	for m in "${CHROOT_MOUNTED[@]}"; do
		mountpoint -q "$m" && umount -R -l "$m"
	done
	CHROOT_MOUNTED=()
	return 0
}

# What the chroot must see as the host does, brought up to date at every
# use: name resolution, and the certificate authorities this machine trusts
# (its HTTPS traffic to the npm registry may pass a proxy with its own CA),
# with npm's global settings that point at them.
chroot_sync_host() {
	local dir f
	dir=$(chroot_dir "$1")
	[ -f /etc/resolv.conf ] && cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
		mkdir -p "$dir/etc/ssl/certs"
		cp -L /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
	fi
	for f in /etc/npmrc /usr/etc/npmrc; do
		if [ -f "$f" ]; then
			mkdir -p "$dir$(dirname "$f")"
			cp -L "$f" "$dir$f"
		fi
	done
	return 0
}

chroot_run() {
	local name=$1
	shift
	chroot_sync_host "$name"
	chroot_mount "$name" || return 1
	chroot "$(chroot_dir "$name")" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
		NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt "$@"
	local rc=$?
	chroot_umount "$name"
	return $rc
}

# The host's Node.js (not a Debian package here) copied into a chroot, so
# the suites that drive the examples run there too.
chroot_copy_node() {
	local dir node npm
	dir=$(chroot_dir "$1")
	node=$(command -v node) || return 0
	npm=$(readlink -f "$(command -v npm)" 2>/dev/null)
	install -m 755 "$(readlink -f "$node")" "$dir/usr/bin/node"
	if [ -n "$npm" ] && [ -f "$npm" ]; then
		local npmdir=${npm%/bin/npm-cli.js}
		mkdir -p "$dir/usr/lib/node_modules"
		rm -rf "$dir/usr/lib/node_modules/npm"
		cp -a "$npmdir" "$dir/usr/lib/node_modules/npm"
		ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$dir/usr/bin/npm"
		ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$dir/usr/bin/npx"
	fi
}

chroot_ensure() {
	local name=$1 suite=$2
	shift 2
	local dir marker want
	dir=$(chroot_dir "$name")
	marker="$dir/.stripe_idem-chroot"
	want="$suite $*"
	mkdir -p "$CHROOT_CACHE"
	exec {lockfd}>"$CHROOT_CACHE/.$name.lock"
	flock "$lockfd"
	if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] &&
		chroot "$dir" /bin/true 2>/dev/null; then
		flock -u "$lockfd"
		return 0
	fi
	echo "== building chroot $name ($suite): $*"
	chroot_umount "$name"
	rm -rf --one-file-system "$dir"
	local start=$SECONDS log="$CHROOT_CACHE/$name.debootstrap.log"
	if ! debootstrap --variant=minbase "$suite" "$dir" "$CHROOT_MIRROR" >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		echo "debootstrap $suite failed (log: $log)" >&2
		flock -u "$lockfd"
		return 1
	fi
	# Archives whose Release file is older than its Valid-Until date
	# (sid, at times) would otherwise be refused.
	echo 'Acquire::Check-Valid-Until "false";' >"$dir/etc/apt/apt.conf.d/99stripe-idem"
	# Packages must not start services in the chroot (a postmaster left
	# running would hold its mounts), and no default cluster is wanted:
	# the suites make their own.
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod 755 "$dir/usr/sbin/policy-rc.d"
	mkdir -p "$dir/etc/postgresql-common"
	echo 'create_main_cluster = false' >"$dir/etc/postgresql-common/createcluster.conf"
	# The server and initdb need the C.UTF-8 locale, which glibc ships.
	if ! chroot_run "$name" sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $* >/tmp/apt.log 2>&1 || { tail -n 30 /tmp/apt.log; exit 1; }"; then
		echo "installing packages into chroot $name failed" >&2
		flock -u "$lockfd"
		return 1
	fi
	chroot_copy_node "$name"
	echo "$want" >"$marker"
	echo "== chroot $name ready in $((SECONDS - start)) s"
	flock -u "$lockfd"
}
