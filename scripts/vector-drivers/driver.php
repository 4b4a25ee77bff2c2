<?php
// Sets keys through PHP's Memcached (php-memcached) or Memcache (pecl memcache) class
// (scripts/record-vectors.ts; pecl memcache's strategy and hash come as -d ini settings).
// stdin: {"client", "variant", "servers": ["h:p", ...], "weights": [...] | null, "keys": [...]}
// stdout: {"failed": n}
$d = json_decode(stream_get_contents(STDIN), true);
$failed = 0;
$split = function (string $s): array {
    $i = strrpos($s, ':');
    return [substr($s, 0, $i), (int) substr($s, $i + 1)];
};
if ($d['client'] === 'php-memcached') {
    $m = new Memcached();
    // Binary protocol: the ASCII one refuses non-ASCII keys.
    $m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
    if ($d['variant'] === 'libketama') $m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
    if ($d['variant'] === 'consistent') $m->setOption(Memcached::OPT_DISTRIBUTION, Memcached::DISTRIBUTION_CONSISTENT);
    foreach ($d['servers'] as $i => $s) {
        [$h, $p] = $split($s);
        $m->addServer($h, $p, $d['weights'][$i] ?? 1);
    }
    foreach ($d['keys'] as $k) if (!$m->set($k, '1')) $failed++;
} else {
    $m = new Memcache();
    foreach ($d['servers'] as $i => $s) {
        [$h, $p] = $split($s);
        $m->addServer($h, $p, false, $d['weights'][$i] ?? 1);
    }
    foreach ($d['keys'] as $k) if (!@$m->set($k, '1', 0, 0)) $failed++;
}
echo json_encode(['failed' => $failed]), "\n";
