{{> header}}
{{#error}}
<p class="error">{{error}}</p>
{{/error}}
{{#user}}
<p>You are logged in as <b>{{name}}</b>.</p>
<h2>API token</h2>
{{#new_token}}
<p class="flash">Your new token, shown this once (keep it; the server keeps only its digest):<br>
<code>{{new_token}}</code></p>
<pre>curl -H 'Authorization: Bearer {{new_token}}' \
     -H 'Content-Type: application/json' -d '{"body": "Hello from curl"}' \
     http://{{host}}/guestbook/api/entries</pre>
{{/new_token}}
<form method="post" action="/guestbook/account/token">
<input type="hidden" name="csrf_token" value="{{csrf_token}}">
<button>New API token</button> (replaces the one you had)
</form>
{{/user}}
{{^user}}
<div class="columns">
<form method="post" action="/guestbook/account/login">
<h2>Log in</h2>
<input type="hidden" name="csrf_token" value="{{csrf_token}}">
<label>Name <input name="name" required autocomplete="username"></label>
<label>Password <input name="password" type="password" required autocomplete="current-password"></label>
<button>Log in</button>
</form>
<form method="post" action="/guestbook/account/signup">
<h2>Sign up</h2>
<input type="hidden" name="csrf_token" value="{{csrf_token}}">
<label>Name <input name="name" required maxlength="32" pattern="[A-Za-z0-9._\-]+" autocomplete="username"></label>
<label>Password <input name="password" type="password" required minlength="8" autocomplete="new-password"></label>
<button>Sign up</button>
</form>
</div>
{{/user}}
{{> footer}}
