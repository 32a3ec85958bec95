# Sourced by the tools/gpu_*.sh scripts: picks the Python to run (the repo's .venv, else python3
# or $PYTHON) and, where fair-esm is missing (the lent GPU machine has torch but no network),
# installs the wheel carried in .whl/ (pip download --no-deps --only-binary=:all: fair-esm==2.0.0 -d .whl)
# into /tmp/p2t-site. Sets PY and PYTHONPATH.
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
if ! "$PY" -c "import esm" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/p2t-site .whl/*.whl
    export PYTHONPATH=/tmp/p2t-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
