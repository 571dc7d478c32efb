#!/usr/bin/env bash
# Turn the CSV files of a bench/run.sh output directory into summary.md
# (printed on stdout) and sweep_latency.png. Medians over the rounds;
# ratios are C over the baseline, so above 1 means the extension is faster
# (for throughput) or, where marked, takes less time.
#
#   bash bench/report.sh OUTDIR ["c plpgsql raw"]
set -euo pipefail

out=$1
variants=${2:-"c plpgsql raw"}
BENCH=$(cd "$(dirname "$0")" && pwd)

# Shared awk: median of a space-separated list of numbers.
AWK_LIB='
function median(list,    a, n, i, j, t) {
	n = split(list, a, " ")
	if (n == 0) return ""
	for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return (n % 2) ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "" : sprintf("%.2f", a / b) }
function fmt(x, d) { return (x == "") ? "–" : sprintf("%." d "f", x) }
'

echo "# stripe_idem benchmarks"
echo
echo '```'
cat "$out/settings.txt"
echo '```'
echo

# ------------------------------------------------------------ pgbench runs
if [ -s "$out/results.csv" ] && [ "$(wc -l <"$out/results.csv")" -gt 1 ]; then
	echo "## Throughput (pgbench -M prepared, median of the rounds, transactions/s)"
	echo
	awk -F, -v vs="$variants" "$AWK_LIB"'
	NR == 1 || $1 == "scale" { next }
	{
		k = $1 SUBSEP $2 SUBSEP $3
		if (!(k in seen)) { seen[k] = 1; order[++n] = k }
		if ($6 != "") tps[k, $4] = tps[k, $4] " " $6
		if ($7 != "") lat[k, $4] = lat[k, $4] " " $7
	}
	END {
		nv = split(vs, v, " ")
		names["c"] = "C"; names["plpgsql"] = "PL/pgSQL"; names["raw"] = "raw SQL"
		wl["check_hit"] = "1. check, hit"; wl["check_miss"] = "2. check, miss"
		wl["begin_record"] = "3. begin + record"; wl["contention"] = "4. contention, 10 hot ids"
		hdr = "| workload | setting | clients |"; sep = "|---|---|---:|"
		for (i = 1; i <= nv; i++) { hdr = hdr " " names[v[i]] " tps | " names[v[i]] " ms |"; sep = sep "---:|---:|" }
		has_c = (index(" " vs " ", " c ") > 0)
		if (has_c) for (i = 1; i <= nv; i++) if (v[i] != "c") { hdr = hdr " C / " names[v[i]] " |"; sep = sep "---:|" }
		print hdr; print sep
		for (j = 1; j <= n; j++) {
			k = order[j]; split(k, p, SUBSEP)
			line = "| " (p[1] in wl ? wl[p[1]] : p[1]) " | " p[2] " | " p[3] " |"
			for (i = 1; i <= nv; i++) {
				m[v[i]] = median(tps[k, v[i]])
				line = line " " fmt(m[v[i]], 0) " | " fmt(median(lat[k, v[i]]), 3) " |"
			}
			if (has_c) for (i = 1; i <= nv; i++) if (v[i] != "c") { r = ratio(m["c"], m[v[i]]); line = line " " (r == "" ? "–" : r) " |" }
			print line
		}
	}' "$out/results.csv"
	echo
	echo "ms: mean latency per transaction as pgbench reports it. Workload 3 is one begin and one"
	echo "record per transaction; workload 4 one begin, and a record when it acquired."
	echo
fi

# ------------------------------------------------------------ scale
if grep -q '^scale,' "$out/results.csv" 2>/dev/null; then
	echo "## Scale: check hit with few and with many keys (median of the rounds)"
	echo
	awk -F, "$AWK_LIB"'
	$1 != "scale" { next }
	{
		if (!($2 in sz)) { sz[$2] = 1; sizes[++ns] = $2 }
		if (!($3 in cl)) { cl[$3] = 1; clients[++nc] = $3 }
		if ($6 != "") tps[$2, $3] = tps[$2, $3] " " $6
		if ($7 != "") lat[$2, $3] = lat[$2, $3] " " $7
		variant = $4
	}
	END {
		hdr = "| variant | clients |"; sep = "|---|---:|"
		for (i = 1; i <= ns; i++) { hdr = hdr " " sizes[i] " keys: tps | ms |"; sep = sep "---:|---:|" }
		print hdr " latency " sizes[ns] " / " sizes[1] " |"; print sep "---:|"
		for (c = 1; c <= nc; c++) {
			line = "| " variant " | " clients[c] " |"
			for (i = 1; i <= ns; i++) {
				l[i] = median(lat[sizes[i], clients[c]])
				line = line " " fmt(median(tps[sizes[i], clients[c]]), 0) " | " fmt(l[i], 3) " |"
			}
			r = ratio(l[ns], l[1]); print line " " (r == "" ? "–" : r) " |"
		}
	}' "$out/results.csv"
	echo
fi

# ------------------------------------------------------------ server side
if [ -s "$out/server.csv" ] && [ "$(wc -l <"$out/server.csv")" -gt 1 ]; then
	echo "## Server-side cost per call (one statement, median of the rounds, microseconds)"
	echo
	awk -F, -v vs="$variants" "$AWK_LIB"'
	NR == 1 { next }
	{
		if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
		if ($6 != "") us[$1, $2] = us[$1, $2] " " $6
		calls[$1] = $4
	}
	END {
		nv = split(vs, v, " ")
		names["c"] = "C"; names["plpgsql"] = "PL/pgSQL"; names["raw"] = "raw SQL"; names["none"] = "no function"
		hdr = "| statement | calls |"; sep = "|---|---:|"
		for (i = 1; i <= nv; i++) { hdr = hdr " " names[v[i]] " µs |"; sep = sep "---:|" }
		print hdr " C / PL/pgSQL (time) |"; print sep "---:|"
		for (j = 1; j <= n; j++) {
			f = order[j]
			line = "| " f " | " calls[f] " |"
			for (i = 1; i <= nv; i++) {
				m[v[i]] = median(us[f, v[i]])
				if (f == "empty_loop") m[v[i]] = median(us[f, "none"])
				line = line " " fmt(m[v[i]], 2) " |"
			}
			r = ratio(m["c"], m["plpgsql"]); print line " " (r == "" || f == "empty_loop" ? "–" : r) " |"
		}
	}' "$out/server.csv"
	echo
	echo "check_hit/check_miss: check_stripe_idempotency over stored/absent ids (raw SQL: the same lookup"
	echo "as a LATERAL subquery); begin_new: begin on new ids with request_params; begin_busy: begin again"
	echo "on those ids while their lease is live; record: record each of them. empty_loop: the"
	echo "generate_series and id arithmetic alone, included in every line above."
	echo
fi

# ------------------------------------------------------------ sweep
if [ -s "$out/sweep.csv" ] && [ "$(wc -l <"$out/sweep.csv")" -gt 1 ]; then
	echo "## Sweep: expired rows deleted under workload 3 (median of the rounds)"
	echo
	awk -F, -v vs="$variants" "$AWK_LIB"'
	NR == 1 { next }
	{
		method[$1] = $2
		for (f = 4; f <= 12; f++) if ($f != "") val[$1, f] = val[$1, f] " " $f
	}
	END {
		nv = split(vs, v, " ")
		names["c"] = "C"; names["plpgsql"] = "PL/pgSQL"; names["raw"] = "raw SQL"
		print "| variant | how | rows | seconds | rows/s | p50 before ms | p99 before ms | p50 during ms | p99 during ms | p99 during / before |"
		print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= nv; i++) {
			x = v[i]; if (!(x in method)) continue
			for (f = 4; f <= 12; f++) m[f] = median(val[x, f])
			r = ratio(m[12], m[9])
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", names[x], method[x],
				fmt(m[4], 0), fmt(m[5], 2), fmt(m[6], 0), fmt(m[8], 2), fmt(m[9], 2), fmt(m[11], 2), fmt(m[12], 2), (r == "" ? "–" : r)
		}
	}' "$out/sweep.csv"
	echo
	echo "before: workload 3 alone, from its second second until the sweep starts; during: from the"
	echo "sweep's start to its end. The chart is sweep_latency.png."
	echo
fi

# ------------------------------------------------------------ sizes
if [ -s "$out/sizes.csv" ] && [ "$(wc -l <"$out/sizes.csv")" -gt 1 ]; then
	echo "## Bytes per stored key (table + indexes)"
	echo
	echo "| database | variant | keys | heap + toast | indexes | total | bytes per key | how the rows got there |"
	echo "|---|---|---:|---:|---:|---:|---:|---|"
	awk -F, 'NR > 1 {
		printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3,
			($4 == 0 ? "–" : sprintf("%.1f MB", $4 / 1048576)), ($5 == 0 ? "–" : sprintf("%.1f MB", $5 / 1048576)),
			sprintf("%.1f MB", $6 / 1048576), $7, $8 }' "$out/sizes.csv"
	echo
fi

# ------------------------------------------------------------ targets
# The 1.1 targets. Per-call cost is read from instruction counts (the same
# number twice); throughput and latency, which swing from run to run on a
# shared machine, as the median over the rounds of the ratio within each
# round (the variants of a round ran side by side).
echo "## Targets"
echo
files=("$out/results.csv" "$out/sweep.csv")
[ -f "$out/instructions.csv" ] && files+=("$out/instructions.csv")
awk -F, -v out="$out" "$AWK_LIB"'
function verdict(x, op, t) {
	if (x == "") return "not measured"
	if (op == ">=") return (x + 0 >= t) ? "met" : "**missed**"
	return (x + 0 <= t) ? "met" : "**missed**"
}
function row(what, x, op, t) { printf "| %s | %s | %s %.2f | %s |\n", what, (x == "" ? "–" : x), op, t, verdict(x, op, t) }
# the median over rounds of a / b, for workload w, setting s, clients c
function round_ratio(w, s, c, a, b,    r, list) {
	list = ""
	for (r = 1; r <= maxround; r++)
		if (((w, s, c, a, r) in tps) && ((w, s, c, b, r) in tps) && tps[w, s, c, b, r] + 0 > 0)
			list = list " " (tps[w, s, c, a, r] / tps[w, s, c, b, r])
	return (list == "") ? "" : sprintf("%.2f", median(list))
}
function sweep_ratio(num, den,    r, list) {
	list = ""
	for (r = 1; r <= maxround; r++)
		if (((num, r) in sw) && ((den, r) in sw) && sw[den, r] + 0 > 0)
			list = list " " (sw[num, r] / sw[den, r])
	return (list == "") ? "" : sprintf("%.2f", median(list))
}
FILENAME ~ /results.csv$/ && FNR > 1 {
	if ($6 != "") tps[$1, $2, $3, $4, $5] = $6
	if ($5 + 0 > maxround) maxround = $5 + 0
	if ($1 == "check_hit") hitset = $2
}
FILENAME ~ /sweep.csv$/ && FNR > 1 {
	if ($6 != "") sw["rate_" $1, $3] = $6
	if ($9 != "" && $12 != "") { sw["p99_" $1, $3] = $12; sw["p99b_" $1, $3] = $9 }
	if ($3 + 0 > maxround) maxround = $3 + 0
}
FILENAME ~ /instructions.csv$/ && FNR > 1 { ins[$1, $2] = $11 }
END {
	print "| target | measured | goal | verdict |"
	print "|---|---:|---:|---|"
	row("instructions per call, check hit: C / PL/pgSQL", ratio(ins["check_hit", "c"], ins["check_hit", "plpgsql"]), "<=", 0.85)
	row("instructions per call, begin replaying a completed operation: C / PL/pgSQL", ratio(ins["begin_replay", "c"], ins["begin_replay", "plpgsql"]), "<=", 0.50)
	row("instructions per call, begin on a new operation: C / PL/pgSQL", ratio(ins["begin_new", "c"], ins["begin_new", "plpgsql"]), "<=", 0.80)
	row("check hit, 1 client: C / PL/pgSQL (tps, median of per-round ratios)", round_ratio("check_hit", hitset, 1, "c", "plpgsql"), ">=", 1.00)
	row("check hit, 4 clients: C / PL/pgSQL (tps, median of per-round ratios)", round_ratio("check_hit", hitset, 4, "c", "plpgsql"), ">=", 1.00)
	row("check hit, 16 clients: C / PL/pgSQL (tps, median of per-round ratios)", round_ratio("check_hit", hitset, 16, "c", "plpgsql"), ">=", 1.00)
	row("begin + record, synchronous_commit on, 4 clients: C / raw SQL (tps, median of per-round ratios)", round_ratio("begin_record", "sync_on", 4, "c", "raw"), ">=", 0.95)
	row("clients p99 during a 1,000,000-row sweep / before it (C, median over rounds)", sweep_ratio("p99_c", "p99b_c"), "<=", 1.50)
	row("sweep rate: sweeper / one DELETE (rows/s, median of per-round ratios)", sweep_ratio("rate_c", "rate_raw"), ">=", 0.50)
}' "${files[@]}"
echo

# ------------------------------------------------------------ chart
# One panel per variant: p50 and p99 of workload 3 per 250 ms, around the
# sweep (shaded), from the round whose p99 during the sweep is the median.
if command -v gnuplot >/dev/null && ls "$out"/sweep-*.dat >/dev/null 2>&1; then
	panels=()
	for v in $variants; do
		# the median round by p99 during the sweep
		r=$(awk -F, -v v="$v" '$1 == v && $4 != "" { print ($12 == "" ? 0 : $12), $3 }' "$out/sweep.csv" | sort -n |
			awk '{ a[NR] = $2 } END { if (NR) print a[int((NR + 1) / 2)] }')
		[ -n "$r" ] && [ -f "$out/sweep-$v-$r.dat" ] || continue
		sort -n "$out/sweep-$v-$r.dat" | awk '
		function flush(    i, j, t, n) {
			n = cnt; if (n == 0) return
			for (i = 2; i <= n; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
			printf "%.3f %.3f %.3f %d\n", (b + 0.5) * 0.25, x[int(0.5 * n + 0.999999)], x[int(0.99 * n + 0.999999)], n * 4
		}
		{ k = int(($1 >= 0) ? $1 / 0.25 : $1 / 0.25 - 1)
		  if (cnt && k != b) { flush(); cnt = 0 }
		  b = k; x[++cnt] = $2 + 0 }
		END { flush() }' >"$out/series-$v.dat"
		panels+=("$v:$(cat "$out/sweep-$v-$r.window"):$r")
	done
	if [ ${#panels[@]} -gt 0 ]; then
		{
			echo "set terminal pngcairo size 1000,$((220 * ${#panels[@]} + 60)) font 'sans,9'"
			echo "set output '$out/sweep_latency.png'"
			echo "set multiplot layout ${#panels[@]},1 title 'workload 3 (begin + record, synchronous\\_commit on) while expired rows are swept'"
			echo "set logscale y"
			echo "set ylabel 'latency, ms'"
			echo "set grid ytics"
			echo "set key top right"
			xmax=$(for p in "${panels[@]}"; do echo "${p#*:}" | cut -d: -f1; done | sort -n | tail -n 1)
			xmin=$(for v in $variants; do [ -f "$out/series-$v.dat" ] && head -n 1 "$out/series-$v.dat"; done |
				awk 'NR == 1 || $1 < m { m = $1 } END { printf "%.0f", m - 0.5 }')
			echo "set xrange [$xmin:$(awk -v x="$xmax" 'BEGIN { printf "%.0f", x + 2 }')]"
			i=0
			for p in "${panels[@]}"; do
				i=$((i + 1))
				v=${p%%:*}
				rest=${p#*:}
				w=${rest%%:*}
				r=${rest#*:}
				case $v in c) name="C: background sweeper" ;; plpgsql) name="PL/pgSQL: cleanup function" ;; raw) name="raw SQL: single DELETE" ;; *) name=$v ;; esac
				[ $i = ${#panels[@]} ] && echo "set xlabel 'seconds from the start of the sweep'"
				echo "set object 1 rect from 0, graph 0 to $w, graph 1 fc rgb '#dddddd' fs solid 0.5 noborder behind"
				echo "set title '$name (round $r; shaded: the sweep, ${w}s)'"
				echo "plot '$out/series-$v.dat' using 1:3 with lines lw 2 lc rgb '#c0392b' title 'p99 per 250 ms', \\"
				echo "     '' using 1:2 with lines lw 1.5 lc rgb '#2c7fb8' title 'p50 per 250 ms'"
			done
			echo "unset multiplot"
		} >"$out/sweep_latency.gp"
		if gnuplot "$out/sweep_latency.gp" 2>"$out/gnuplot.err"; then
			echo "Chart: sweep_latency.png"
		else
			sed 's/^/gnuplot: /' "$out/gnuplot.err" >&2
			exit 1
		fi
	fi
fi
