"""nbgrader configuration for the featurelab course (course root = the repository root).

`python -m autograder ...` passes this file explicitly; plain `nbgrader` commands run from the
repository root pick it up with `--config autograder/nbgrader_config.py`.
"""

from pathlib import Path

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

ROOT = Path(__file__).resolve().parent.parent
c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.course_id = "featurelab"
# Per-cell time limit while autograding (feature extraction cells need more than the 30 s default).
c.Execute.timeout = 600
c.Execute.interrupt_on_timeout = True
# Solution regions in the student release.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
