<?php
require __DIR__ . '/_db.php';
header('Content-Type: application/json');
$pdo = tfb_pdo();
$count = tfb_queries();
$statement = $pdo->prepare('SELECT id, randomnumber FROM world WHERE id = ?');
$arr = [];
while (0 < $count--) {
    $statement->execute([mt_rand(1, 10000)]);
    $row = $statement->fetch(PDO::FETCH_NUM);
    $arr[] = ['id' => (int)$row[0], 'randomNumber' => (int)$row[1]];
}
echo json_encode($arr);
