"""The ``lm-unlearn`` command line: argument parsing and calls into the workflows."""
