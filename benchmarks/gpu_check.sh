#!/usr/bin/env bash
# One run on a lent GPU machine: the paper-scale benchmark at paper size, the Python API on the device beside
# the CPU (benchmarks/api_device_check.py), a one-rank torchrun `cortex index`, and the CUDA-marked tests.
#
# Run from the repository root with OUT set (a folder whose files come back) and the wheels of the
# packages the machine lacks in .whl/ (carried beside the checkout):
#
#     bash benchmarks/gpu_check.sh
#
# The machine's python3 keeps its own torch and packages: the wheels go into a --target folder with
# --no-deps, and the checkout itself is imported from PYTHONPATH (its migrations/ are found from the
# checkout). cortex's backends are entry points, so a minimal cortex_cli dist-info carrying
# pyproject.toml's entry points is written into that folder too. Each step tees its own log into
# $OUT and a failing step does not stop the next; the exit status is 0 only when every step passed.
# Each long step runs under a time limit, so the whole run ends inside about 9 minutes.
#
# The wheels (about 6 MiB; .whl/ is listed in .git/info/exclude, never committed): what cortex needs beyond
# the machine's image (the device README's KINDS.md package list), fetched here for CPython 3.12 with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     taming-transformers-rom1504==0.0.6 omegaconf==2.4.0 SQLAlchemy==2.1.9 alembic==1.20.1 Mako==1.4.3 \
#     platformdirs==4.14.9 captum==0.9.0 typing_extensions==4.16.0
# omegaconf 2.4 vendors its antlr4 runtime and SQLAlchemy 2.1 needs greenlet only for asyncio; captum is
# optional (paper_scale's Captum row); typing_extensions is carried because alembic needs >= 4.12 and the
# image's version is not on record. Every other requirement of these is in the image.
#
# Environment (defaults for the GPU machine; a CPU dry run: GPU_CHECK_SIZE=tiny GPU_CHECK_DEVICE=cpu):
#   GPU_CHECK_PYTHON     python3        the interpreter that holds torch
#   GPU_CHECK_SIZE       paper          paper_scale.py --size
#   GPU_CHECK_DEVICE     cuda           paper_scale.py --device, and CORTEX_TEST_DEVICE for the tests
#   GPU_CHECK_BUDGET_S   300            paper_scale.py --budget-s (skips optional baselines once spent)
#   GPU_CHECK_PS_LIMIT_S 360            wall-clock limit of paper_scale.py
#   GPU_CHECK_TEST_LIMIT_S 120          wall-clock limit of the CUDA tests
#   GPU_CHECK_PAPER_SCALE 1             0 skips paper_scale.py (already measured)
#   GPU_CHECK_SITE       /tmp/site      where the wheels are installed
#   GPU_CHECK_WHEELS     .whl           the carried wheels

set -u
cd "$(dirname "$0")/.." || exit 2
: "${OUT:?set OUT to the folder whose files come back}"
mkdir -p "$OUT"
PY=${GPU_CHECK_PYTHON:-python3}
SIZE=${GPU_CHECK_SIZE:-paper}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
BUDGET=${GPU_CHECK_BUDGET_S:-300}
PS_LIMIT=${GPU_CHECK_PS_LIMIT_S:-360}
TEST_LIMIT=${GPU_CHECK_TEST_LIMIT_S:-120}
SITE=${GPU_CHECK_SITE:-/tmp/site}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
unset CORTEX_DB CORTEX_TEST_BACKEND
START=$(date +%s)
FAILED=""

step() {  # step NAME: a banner with the seconds since the start
    echo
    echo "=== $1 ($(( $(date +%s) - START )) s) ==="
}

step "machine"
{
    date -u
    uname -srm
    nvidia-smi || echo "nvidia-smi: not available"
    "$PY" -V
} 2>&1 | tee "$OUT/machine.txt"

step "install $WHEELS into $SITE (no index, no deps: the machine's torch stays)"
{
    ls -l "$WHEELS"/*.whl
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
        && "$PY" - "$SITE" <<'EOF'
# cortex's backends are found by entry point (cortex_cli/backends/__init__.py): give the checkout a dist-info
import pathlib, sys, tomllib
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path(sys.argv[1]) / f"cortex_cli-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
groups = {**project.get("entry-points", {}), "console_scripts": project.get("scripts", {})}
(info / "entry_points.txt").write_text("".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
                                               for group, entries in groups.items()))
print(f"wrote {info}")
EOF
} 2>&1 | tee "$OUT/install.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || FAILED="$FAILED install"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

step "environment"
"$PY" - "$DEVICE" <<'EOF' 2>&1 | tee -a "$OUT/machine.txt"
import importlib, sys
import torch
device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available {torch.cuda.is_available()}, "
      f"cuDNN {torch.backends.cudnn.version()}")
if torch.cuda.is_available():
    print(f"device {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}, "
          f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
from importlib.metadata import version
for name in ("torchvision", "pytorch-lightning", "transformers", "numpy", "typing-extensions", "typer", "rich", "pytest",
             "taming-transformers-rom1504", "omegaconf", "sqlalchemy", "alembic", "mako", "platformdirs", "captum"):
    try:
        print(f"  {name} {version(name)}")
    except Exception as exc:
        print(f"  {name}: {type(exc).__name__}")
import cortex_cli.cli, omegaconf, sqlalchemy, alembic, taming  # noqa: E401,F401  what the CLI and the tests need
from cortex_cli import backends
from cortex_cli.store.database import migrations_dir
print(f"cortex_cli from {cortex_cli.__file__}; backends {backends.known_backends()}; migrations {migrations_dir()}")
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch")
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || FAILED="$FAILED environment"

if [ "${GPU_CHECK_PAPER_SCALE:-1}" != 0 ]; then
    step "paper_scale.py --size $SIZE --device $DEVICE --budget-s $BUDGET (limit ${PS_LIMIT} s)"
    timeout -k 15 "$PS_LIMIT" "$PY" benchmarks/paper_scale.py --size "$SIZE" --device "$DEVICE" --budget-s "$BUDGET" \
        --json-out "$OUT/paper_scale_h200.json" 2>&1 | tee "$OUT/paper_scale.txt"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { FAILED="$FAILED paper_scale"; echo "paper_scale.py: exit $rc (124: over its ${PS_LIMIT} s limit)"; }
fi

step "api_device_check.py --device $DEVICE (limit 240 s)"
timeout -k 15 240 "$PY" benchmarks/api_device_check.py --device "$DEVICE" --images 50 --json-out "$OUT/api_device.json" 2>&1 \
    | tee "$OUT/api_device.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { FAILED="$FAILED api_device"; echo "api_device_check.py: exit $rc"; }

step "torchrun --nproc-per-node 1 -m cortex_cli --device $DEVICE index (limit 120 s)"
CORTEX_HOME=$(mktemp -d) timeout -k 15 120 "$PY" -m torch.distributed.run --nproc-per-node 1 -m cortex_cli --device "$DEVICE" \
    index --class "red-capped bird" -n 32 --json 2>&1 | tee "$OUT/torchrun_index.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { FAILED="$FAILED torchrun_index"; echo "torchrun index: exit $rc"; }

step "pytest -m cuda tests/test_cuda.py, CORTEX_TEST_DEVICE=$DEVICE (limit ${TEST_LIMIT} s)"
CORTEX_TEST_DEVICE="$DEVICE" timeout -k 15 "$TEST_LIMIT" "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider \
    --durations=5 2>&1 | tee "$OUT/cuda_tests.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { FAILED="$FAILED cuda_tests"; echo "pytest: exit $rc (124: over its ${TEST_LIMIT} s limit)"; }

step "done"
ls -l "$OUT"
if [ -n "$FAILED" ]; then
    echo "FAILED:$FAILED"
    exit 1
fi
echo "all steps passed"
