"""Critical sampling against plain sampling at the same budget (``python -m bench.critical``)."""
