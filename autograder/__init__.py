"""Instructor side of featurelab (never shipped to students): nbgrader configuration, the
command line (``python -m autograder``), and the reference checks the hidden tests call."""
