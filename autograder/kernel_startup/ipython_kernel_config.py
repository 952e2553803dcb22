# IPython kernel configuration of the grading kernels (copied per run into
# $IPYTHONDIR/profile_default/ by `python -m autograder grade`; see __init__.py next to it).
c = get_config()  # noqa: F821  (provided by traitlets)

# Runs when the kernel starts, before the first cell: capture pristine references of
# torch.equal, numpy.allclose, ... (autograder.checks) before student code can redefine them.
c.IPKernelApp.exec_lines = [
    "import autograder.kernel_startup as _featurelab_startup",
    "_featurelab_startup.run()",
    "del _featurelab_startup",
]
# Nothing of a grading run is kept in an IPython history database.
c.HistoryManager.enabled = False
