"""Repository rule that turns the project's virtualenv into Bazel's Python toolchain.

Bazel 4 ignores `--python_path`: without a registered toolchain, `py_test` silently runs under
whatever `python3` is on the default PATH, which lacks TensorFlow. This rule writes a
`py_runtime` + `py_runtime_pair` + `toolchain` whose `interpreter_path` is the virtualenv's
interpreter, found at fetch time (never hard-coded, so any clone location works):

1. `$SEMANTIC_IDS_PYTHON` when set (an absolute path; `scripts/bazel_test.sh` sets it), else
2. `<workspace root>/.venv/bin/python`.

The interpreter path is used as is (symlinks unresolved), so Python still finds the venv's
`pyvenv.cfg` and its site-packages.
"""

_ENV_VAR = "SEMANTIC_IDS_PYTHON"

def _venv_python_impl(rctx):
    interpreter = rctx.os.environ.get(_ENV_VAR, "")
    if not interpreter:
        workspace_root = rctx.path(Label("@//:WORKSPACE")).dirname
        interpreter = "{}/.venv/bin/python".format(workspace_root)
    if not interpreter.startswith("/"):
        fail("`{}` must be an absolute path. Received: {}={}".format(
            _ENV_VAR,
            _ENV_VAR,
            interpreter,
        ))
    if not rctx.path(interpreter).exists:
        fail(("Python interpreter not found: {}. Create the virtualenv " +
              "(python3 -m venv .venv && .venv/bin/pip install -r requirements.txt) " +
              "or set {} to an interpreter that has the requirements.").format(
            interpreter,
            _ENV_VAR,
        ))
    result = rctx.execute([interpreter, "-c", "import sys; print(sys.version_info[0])"])
    if result.return_code != 0 or result.stdout.strip() != "3":
        fail("{} is not a working Python 3 interpreter: {}{}".format(
            interpreter,
            result.stdout,
            result.stderr,
        ))
    rctx.template(
        "BUILD",
        rctx.attr._build_template,
        substitutions = {"%{interpreter}": interpreter},
        executable = False,
    )

venv_python = repository_rule(
    implementation = _venv_python_impl,
    attrs = {
        "_build_template": attr.label(default = Label("//third_party/bazel:venv_python.BUILD.tpl")),
    },
    environ = [_ENV_VAR],
    local = True,
    doc = "Registers the project's virtualenv interpreter as a Python 3 toolchain.",
)
