"""``inkvoice serve``: a JSON API and a web page for both pipelines (needs the ``serve`` extra)."""
