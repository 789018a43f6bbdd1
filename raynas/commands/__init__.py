"""One module per ``python -m raynas`` command (see ``raynas.cli``)."""
