{{> header}}
{{#entry}}
{{> entry}}
{{/entry}}
{{^entry}}
<p>There is no such entry.</p>
{{/entry}}
<p><a href="/guestbook/">All entries</a></p>
{{> footer}}
