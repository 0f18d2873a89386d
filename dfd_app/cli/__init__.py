"""One module per ``dfd`` command: each parses its arguments and makes one library call."""
