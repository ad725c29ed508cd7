<?php
require __DIR__ . '/_db.php';
header('Content-Type: application/json');
$pdo = tfb_pdo();
$statement = $pdo->prepare('SELECT id, randomnumber FROM world WHERE id = ?');
$statement->execute([mt_rand(1, 10000)]);
$row = $statement->fetch(PDO::FETCH_NUM);
echo json_encode(['id' => (int)$row[0], 'randomNumber' => (int)$row[1]]);
