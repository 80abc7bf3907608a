"""Builders of the bad-input corpus (tests/test_bad_input_corpus.py)."""
