<?php
require __DIR__ . '/_db.php';
header('Content-Type: application/json');
$pdo = tfb_pdo();
$count = tfb_queries();
$statement = $pdo->prepare('SELECT randomnumber FROM world WHERE id = ?');
$update = $pdo->prepare('UPDATE world SET randomnumber = ? WHERE id = ?');
$arr = [];
while (0 < $count--) {
    $id = mt_rand(1, 10000);
    $statement->execute([$id]);
    $statement->fetchColumn();
    $world = ['id' => $id, 'randomNumber' => mt_rand(1, 10000)];
    $update->execute([$world['randomNumber'], $id]);
    $arr[] = $world;
}
echo json_encode($arr);
