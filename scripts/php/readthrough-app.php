<?php
// A PHP read-through application for scripts/bench-php-copy-handoff.ts: php-memcached with
// OPT_LIBKETAMA_COMPATIBLE (memdrain's "php-memcached-libketama"), a static server list, Zipf
// (s = 1) over N keys, paced to RATE requests/s, WRITE_SHARE of them writes (database first, then
// set). Values are "key#version"; the "database" is this process's array. A hit older than the
// database's version is a stale read, its age the time since the write that superseded it.
// When the file SWITCH_REQ appears it switches to the server list without DRAINED (and writes
// SWITCH_ACK), as a deploy would; it then measures the hit ratio of the keys that lived on
// DRAINED for AFTER seconds and exits, printing one JSON report.
[$_, $serversCsv, $drained, $n, $rate, $writeShare, $switchReq, $switchAck, $after, $maxSeconds] = $argv;
$n = (int)$n; $rate = (float)$rate; $writeShare = (float)$writeShare; $after = (float)$after;
$servers = explode(',', $serversCsv);
function client(array $servers): Memcached {
  $m = new Memcached();
  $m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
  $m->setOption(Memcached::OPT_COMPRESSION, false);
  foreach ($servers as $s) { [$h, $p] = explode(':', $s); $m->addServer($h, (int)$p); }
  return $m;
}
$old = client($servers);
$new = client(array_values(array_filter($servers, fn($s) => $s !== $drained)));
$m = $old;
// Zipf CDF.
$cdf = []; $sum = 0.0;
for ($i = 1; $i <= $n; $i++) { $sum += 1.0 / $i; $cdf[] = $sum; }
function pick(array $cdf, float $sum): int {
  $u = mt_rand() / mt_getrandmax() * $sum; $lo = 0; $hi = count($cdf) - 1;
  while ($lo < $hi) { $mid = ($lo + $hi) >> 1; if ($cdf[$mid] < $u) $lo = $mid + 1; else $hi = $mid; }
  return $lo;
}
$db = array_fill(0, $n, 1);
$writtenAt = []; // key => [version => time]
$t0 = microtime(true); $reqs = 0; $reads = 0; $hits = 0; $writes = 0; $stale = 0; $staleAges = []; $staleSamples = [];
$switchedAt = null; $afterReads = 0; $afterHits = 0; $onDrained = [];
$lastCheck = 0.0;
while (true) {
  $now = microtime(true);
  if ($now - $t0 > (float)$maxSeconds) break;
  if ($switchedAt !== null && $now - $switchedAt > $after) break;
  $due = $t0 + $reqs / $rate;
  if ($due > $now) usleep((int)(($due - $now) * 1e6));
  if ($switchedAt === null && $now - $lastCheck > 0.005) {
    $lastCheck = $now;
    if (file_exists($switchReq)) { $m = $new; $switchedAt = microtime(true); touch($switchAck); }
  }
  $reqs++;
  $i = pick($cdf, $sum); $key = "php:$i";
  if (mt_rand() / mt_getrandmax() < $writeShare) {
    $v = ++$db[$i];
    $writtenAt[$i][$v] = microtime(true);
    if (count($writtenAt[$i]) > 16) array_shift($writtenAt[$i]);
    $m->set($key, "$key#$v");
    $writes++;
    continue;
  }
  $val = $m->get($key);
  $reads++;
  $tracked = false;
  if ($switchedAt !== null) {
    if (!isset($onDrained[$i])) { $srv = $old->getServerByKey($key); $onDrained[$i] = ("{$srv['host']}:{$srv['port']}" === $drained); }
    $tracked = $onDrained[$i];
    if ($tracked) $afterReads++;
  }
  if ($val === false) {
    // Read-through: load from the database, put it in the cache.
    $m->set($key, "$key#{$db[$i]}");
    continue;
  }
  $hits++;
  if ($tracked) $afterHits++;
  $got = (int)substr($val, strrpos($val, '#') + 1);
  if ($got < $db[$i]) {
    $stale++;
    $age = isset($writtenAt[$i][$got + 1]) ? microtime(true) - $writtenAt[$i][$got + 1] : -1;
    $staleAges[] = $age;
    if (count($staleSamples) < 10) $staleSamples[] = sprintf('%s: read #%d, database #%d, superseded %.3f s ago, %s the switch', $key, $got, $db[$i], $age, $switchedAt === null ? 'before' : sprintf('%.3f s after', microtime(true) - $switchedAt));
  }
}
$secs = microtime(true) - $t0;
rsort($staleAges);
echo json_encode([
  'seconds' => round($secs, 2), 'requests' => $reqs, 'requestsPerSecond' => round($reqs / $secs), 'reads' => $reads, 'hits' => $hits, 'writes' => $writes,
  'switched' => $switchedAt !== null, 'stale' => $stale, 'oldestStaleSeconds' => $staleAges[0] ?? 0, 'staleOver50ms' => count(array_filter($staleAges, fn($a) => $a > 0.05)),
  'staleSamples' => $staleSamples,
  'drainedKeysAfterSwitch' => ['reads' => $afterReads, 'hits' => $afterHits, 'hitRatio' => $afterReads > 0 ? round($afterHits / $afterReads, 4) : null],
]), "\n";
