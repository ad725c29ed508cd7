{{! One entry (an object from entry_json in _app.h); a partial of index.tpl
    and show.tpl. The body is escaped, like every double-brace tag: what a
    visitor wrote is shown as text, never run as HTML. }}
<article class="entry">
<p class="meta"><a href="/guestbook/entry/{{id}}">#{{id}}</a> by <b>{{author}}</b>, {{created}} UTC</p>
<p class="body">{{body}}</p>
{{#picture}}
<img src="/guestbook/entry/picture/{{id}}" alt="a picture by {{author}}">
{{/picture}}
{{#mine}}
<form method="post" action="/guestbook/delete">
<input type="hidden" name="csrf_token" value="{{csrf_token}}">
<input type="hidden" name="id" value="{{id}}">
<button>Delete</button>
</form>
{{/mine}}
</article>
