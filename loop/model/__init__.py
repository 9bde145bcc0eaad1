"""The model side of the loop: loading, the one text format, training rounds, scoring and sampling backends."""
