{{> header}}
{{#user}}
<form method="post" action="/guestbook/post" enctype="multipart/form-data">
<input type="hidden" name="csrf_token" value="{{csrf_token}}">
<label>Your message
<textarea name="body" rows="4" maxlength="2000" required>{{draft}}</textarea></label>
<label>A picture (optional; PNG, JPEG, GIF or WebP, up to 512 KiB)
<input type="file" name="picture" accept="image/*"></label>
{{#error}}
<p class="error">{{error}}</p>
{{/error}}
<button>Sign the guestbook</button>
</form>
{{/user}}
{{^user}}
<p><a href="/guestbook/account">Log in or sign up</a> to sign the guestbook.</p>
{{/user}}
{{#entries}}
{{> entry}}
{{/entries}}
{{^entries}}
<p>No entries yet.</p>
{{/entries}}
{{> footer}}
