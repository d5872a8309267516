"""Command groups of the `iterate` CLI; each module has a `register(app)`."""
