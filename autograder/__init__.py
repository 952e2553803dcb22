"""Instructor side of featurelab (never shipped to students): nbgrader configuration, the
command line (``python -m autograder``), and the reference checks the hidden tests call."""

import sys as _sys

# jsonschema (under nbformat) imports rfc3987_syntax, when installed, only to check "iri"
# strings, and that builds a grammar for 2-3 s at import, in every grader process. No notebook
# schema uses that format; without the module jsonschema skips it (as the sandbox runner does).
_sys.modules.setdefault("rfc3987_syntax", None)
