"""``dfd serve``: the HTTP detection service and its upload page."""
