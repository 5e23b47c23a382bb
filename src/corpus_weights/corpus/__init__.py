"""The corpus side: text, tokenization, training-free corpus statistics, corpus initialisations. Imports core only."""
