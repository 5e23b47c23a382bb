"""Shared foundations: ids, linear algebra, spectra, nulls, decision rules, the note's values, I/O helpers and input checks. Imports nothing else of the package."""
