<?php
// bench/tfb/_php/_db.php - the PDO connection of the PHP-FPM peer of
// bench/tfb.sh, the way TFB's PHP entry (frameworks/PHP/php) opens it: a
// persistent PDO connection, reused by the FPM child across requests.
// TFB_PDO_DSN, _USER, _PASSWORD come from the FPM pool's env[] (bench/tfb.py writes it).
function tfb_pdo(): PDO
{
    return new PDO(getenv('TFB_PDO_DSN'), getenv('TFB_PDO_USER') ?: null,
        getenv('TFB_PDO_PASSWORD') ?: null, [
        PDO::ATTR_PERSISTENT => true,
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    ]);
}

// `queries` clamped to 1..500; missing or not an integer means 1.
function tfb_queries(): int
{
    $n = filter_var($_GET['queries'] ?? '', FILTER_VALIDATE_INT);
    return $n === false ? 1 : max(1, min(500, $n));
}
