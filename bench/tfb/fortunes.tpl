<!DOCTYPE html>
<html>
<head><title>Fortunes</title></head>
<body>
<table>
<tr><th>id</th><th>message</th></tr>
{{#fortunes}}
<tr><td>{{id}}</td><td>{{message}}</td></tr>
{{/fortunes}}
</table>
</body>
</html>
