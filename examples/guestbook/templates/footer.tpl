{{! The bottom half of the layout (see header.tpl). }}
</main>
<footer>An example application of hotpub: <code>examples/guestbook/</code>
&middot; <a href="/guestbook/api/entries">JSON</a>
&middot; <a href="/guestbook/export">CSV</a></footer>
</body>
</html>
