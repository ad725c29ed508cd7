{{! The top half of the layout, shared by every page: a page's template
    starts with the partial header and ends with the partial footer. Reads
    title, user (name), csrf_token and flash: page_data in _app.h. }}
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} - Guestbook</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<header>
<a href="/guestbook/">Guestbook</a>
{{#user}}
&middot; <a href="/guestbook/account">{{name}}</a>
<form class="inline" method="post" action="/guestbook/account/logout">
<input type="hidden" name="csrf_token" value="{{csrf_token}}">
<button>Log out</button>
</form>
{{/user}}
{{^user}}
&middot; <a href="/guestbook/account">Log in or sign up</a>
{{/user}}
</header>
<main>
<h1>{{title}}</h1>
{{#flash}}
<p class="flash">{{flash}}</p>
{{/flash}}
