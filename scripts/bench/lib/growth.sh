# Growth rows for scripts/bench/copy and scripts/bench/seed (sourced): how the cost of a ferry
# command grows with the disk. Each size gets a sparse image of the same density (16 MiB of
# random data every 32 MiB, the rest holes); the cost per GiB must stay flat. A peer (cp,
# tar) doing the same move at each size shows how much of the growth is the storage's own
# (the page cache filling up, then the disk's speed): the goal is ferry's growth of s/GiB,
# largest size over smallest, divided by the peer's, <= 1.25x. The peak RSS of
# each command shows that memory stays bounded. Memory is warmed before each (warm-memory).
#
#   growth_image PATH SIZE          make the image (outside the clock)
#   growth_measure LABEL SIZE CMD   run CMD, then sync, on the clock; record seconds and RSS
#   growth_report LABEL=PEER...     print the rows, and a verdict for each ferry row against its peer
# Source it once $work (the bench's temp dir) is set.
growth_results="$work/growth.tsv"
: >"$growth_results"

growth_image() { # path size
  rm -f "$1"
  node "$(dirname "${BASH_SOURCE[0]}")/make-image.mjs" "$1" "$2" 16M 16M holes >/dev/null
  cat "$1" >/dev/null # into the page cache, as the other rows' images
}

growth_measure() { # label size command...
  local label=$1 size=$2 start rss_file="$work/growth-rss"
  shift 2
  "$(dirname "${BASH_SOURCE[0]}")/warm-memory" "$work" $(($(numfmt --from=iec "$size") / 2))
  sync
  start=$EPOCHREALTIME
  if ! /usr/bin/time -f %M -o "$rss_file" "$@" >/dev/null 2>"$rss_file.err"; then
    cat "$rss_file.err" >&2
    exit 1
  fi
  sync
  printf '%s\t%s\t%s\t%s\n' "$label" "$(numfmt --from=iec "$size")" "$(echo "$EPOCHREALTIME - $start" | bc)" "$(tail -1 "$rss_file")" >>"$growth_results"
  rm -f "$rss_file" "$rss_file.err"
}

growth_report() { # "LABEL=PEER LABEL"...: each ferry row's label and its peer's
  node - "$growth_results" "$@" <<'JS'
const [file, ...pairs] = process.argv.slice(2);
const rows = require('fs').readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => {
  const [label, bytes, seconds, rssKb] = l.split('\t');
  return { label, gib: Number(bytes) / 2 ** 30, seconds: Number(seconds), rssMib: Number(rssKb) / 1024 };
});
console.log('growth (sparse images, half data)   size GiB   seconds    s/GiB  peak RSS MiB');
for (const r of rows) console.log(`  ${r.label.padEnd(33)} ${r.gib.toFixed(0).padStart(8)} ${r.seconds.toFixed(2).padStart(9)} ${(r.seconds / r.gib).toFixed(3).padStart(8)} ${r.rssMib.toFixed(0).padStart(13)}`);
// How s/GiB grows from the smallest size to the largest.
const growthOf = (label) => {
  const mine = rows.filter((r) => r.label === label).sort((a, b) => a.gib - b.gib);
  const [small, large] = [mine[0], mine[mine.length - 1]];
  return { small, large, growth: large.seconds / large.gib / (small.seconds / small.gib) };
};
for (const pair of pairs) {
  const [label, peer] = pair.split('=');
  const mine = growthOf(label);
  const theirs = growthOf(peer);
  const relative = mine.growth / theirs.growth;
  console.log(
    `goal ${label}: s/GiB at ${mine.large.gib.toFixed(0)} GiB / at ${mine.small.gib.toFixed(0)} GiB = ${mine.growth.toFixed(2)}x (${peer}: ${theirs.growth.toFixed(2)}x); ` +
      `against the peer's ${relative.toFixed(2)}x, goal <= 1.25x (flat): ${relative <= 1.25 ? 'met' : 'MISSED'}; peak RSS ${mine.small.rssMib.toFixed(0)} -> ${mine.large.rssMib.toFixed(0)} MiB`,
  );
}
JS
}
