#!/usr/bin/env bash
# One run on a lent GPU machine, most needed first: the paper-scale benchmark at paper size (every stage timed as
# the commands run it; its JSON is named after the card), the CUDA-marked tests, a one-rank torchrun `cortex index`,
# the Python API on the device beside the CPU (benchmarks/api_device_check.py), the sampling (and, where it
# takes --device, saliency) benchmarks on the device, and last the paper-scale projection on LlamaGen GPT-L at 384 px
# (paper_scale.py --model llamagen; issue 31), whose time is held back from the steps before it.
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
# Each long step runs under a time limit, capped by what is left of the whole run's GPU_CHECK_TOTAL_S, so the
# whole run ends inside about 9 minutes (a step with under 20 s left is skipped and counted as failed). The
# LlamaGen projection's limit (GPU_CHECK_LLAMAGEN_LIMIT_S) is kept out of what the steps before it may use, so
# it still has its time at the end; the total stays GPU_CHECK_TOTAL_S.
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
#   GPU_CHECK_TOTAL_S    530            the whole run's wall-clock limit: every step's limit is capped by what is left
#   GPU_CHECK_PS_LIMIT_S 300            wall-clock limit of paper_scale.py (its JSON is rewritten after every stage)
#   GPU_CHECK_BUDGET_S   PS limit - 90  paper_scale.py --budget-s (skips optional rows once spent: bf16 generation, baselines)
#   GPU_CHECK_API_LIMIT_S 150           wall-clock limit of api_device_check.py (it also runs the calls on the CPU)
#   GPU_CHECK_TORCHRUN_LIMIT_S 60       wall-clock limit of the torchrun index
#   GPU_CHECK_TEST_LIMIT_S 90           wall-clock limit of the CUDA tests
#   GPU_CHECK_BENCH_LIMIT_S 60          wall-clock limit of bench_sampling.py and of bench_saliency.py, each
#   GPU_CHECK_SAMPLING_BATCH 64 (CPU 8) bench_sampling.py --batch
#   GPU_CHECK_PAPER_SCALE 1             0 skips paper_scale.py (already measured)
#   GPU_CHECK_LLAMAGEN   1              0 skips the LlamaGen projection (and holds no time back for it)
#   GPU_CHECK_LLAMAGEN_LIMIT_S 150      wall-clock limit of paper_scale.py --model llamagen (--budget-s: limit - 90)
#   GPU_CHECK_LLAMAGEN_GPT GPT-L (CPU GPT-B)    its --gpt-model (a released size, llamagen.GPT_MODELS)
#   GPU_CHECK_LLAMAGEN_IMAGE_SIZE 384 (CPU 256) its --image-size
#   GPU_CHECK_SITE       /tmp/site      where the wheels are installed
#   GPU_CHECK_WHEELS     .whl           the carried wheels

set -u
cd "$(dirname "$0")/.." || exit 2
: "${OUT:?set OUT to the folder whose files come back}"
mkdir -p "$OUT"
PY=${GPU_CHECK_PYTHON:-python3}
SIZE=${GPU_CHECK_SIZE:-paper}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
TOTAL=${GPU_CHECK_TOTAL_S:-530}
PS_LIMIT=${GPU_CHECK_PS_LIMIT_S:-300}
BUDGET=${GPU_CHECK_BUDGET_S:-$(( PS_LIMIT - 90 ))}
API_LIMIT=${GPU_CHECK_API_LIMIT_S:-150}
TORCHRUN_LIMIT=${GPU_CHECK_TORCHRUN_LIMIT_S:-60}
TEST_LIMIT=${GPU_CHECK_TEST_LIMIT_S:-90}
BENCH_LIMIT=${GPU_CHECK_BENCH_LIMIT_S:-60}
LLAMAGEN=${GPU_CHECK_LLAMAGEN:-1}
LG_LIMIT=${GPU_CHECK_LLAMAGEN_LIMIT_S:-150}
RESERVED=0  # seconds of TOTAL held back for the LlamaGen projection until its step
[ "$LLAMAGEN" != 0 ] && RESERVED=$LG_LIMIT
case "$DEVICE" in  # a CPU dry run: one torch thread (steadier on a shared CPU), small sampling batches, LlamaGen GPT-B at 256 px
    cuda*) SAMPLING_BATCH=${GPU_CHECK_SAMPLING_BATCH:-64}; REPEATS=3; THREADS=0
           LG_GPT=${GPU_CHECK_LLAMAGEN_GPT:-GPT-L}; LG_IMAGE_SIZE=${GPU_CHECK_LLAMAGEN_IMAGE_SIZE:-384} ;;
    *) SAMPLING_BATCH=${GPU_CHECK_SAMPLING_BATCH:-8}; REPEATS=1; THREADS=1
       LG_GPT=${GPU_CHECK_LLAMAGEN_GPT:-GPT-B}; LG_IMAGE_SIZE=${GPU_CHECK_LLAMAGEN_IMAGE_SIZE:-256} ;;
esac
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

limit() {  # limit SECONDS: SECONDS, or what is left of the run's TOTAL (less RESERVED) if less (never below 0)
    local left=$(( TOTAL - ($(date +%s) - START) - 5 - RESERVED ))
    [ "$left" -lt 0 ] && left=0
    if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}

enough() {  # enough NAME LIMIT: false (and NAME counted as failed) when LIMIT leaves a step under 20 s
    if [ "$2" -lt 20 ]; then
        echo "$1: skipped, ${2} s left of the run's ${TOTAL} s"
        FAILED="$FAILED $1(no time)"
        return 1
    fi
}

card_slug() {  # the card's name as a file-name part: 'NVIDIA H100 80GB HBM3' -> h100_80gb_hbm3; cpu on a CPU run
    local name=""
    case "$DEVICE" in
        cuda*) name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
               [ -n "$name" ] || name=$("$PY" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "")' 2>/dev/null) ;;
        *) name=cpu ;;
    esac
    name=$(printf '%s' "${name:-unknown}" | tr '[:upper:]' '[:lower:]' | sed -e 's/^nvidia[ _-]*//' -e 's/[^a-z0-9][^a-z0-9]*/_/g' -e 's/^_//' -e 's/_$//')
    echo "${name:-unknown}"
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

CARD=$(card_slug)
if [ "${GPU_CHECK_PAPER_SCALE:-1}" != 0 ]; then
    L=$(limit "$PS_LIMIT")
    B=$(( BUDGET < L - 60 ? BUDGET : L - 60 ))
    [ "$B" -gt 0 ] || B=0
    step "paper_scale.py --size $SIZE --device $DEVICE --budget-s $B (limit ${L} s) -> paper_scale_${CARD}.json"
    if enough paper_scale "$L"; then
        timeout -k 15 "$L" "$PY" benchmarks/paper_scale.py --size "$SIZE" --device "$DEVICE" --budget-s "$B" --threads "$THREADS" \
            --json-out "$OUT/paper_scale_${CARD}.json" 2>&1 | tee "$OUT/paper_scale_${CARD}.txt"
        rc=${PIPESTATUS[0]}
        [ "$rc" -eq 0 ] || { FAILED="$FAILED paper_scale"; echo "paper_scale.py: exit $rc (124: over its ${L} s limit; the JSON holds the stages it finished)"; }
    fi
fi

L=$(limit "$TEST_LIMIT")
step "pytest -m cuda tests/test_cuda.py, CORTEX_TEST_DEVICE=$DEVICE (limit ${L} s)"
if enough cuda_tests "$L"; then
    CORTEX_TEST_DEVICE="$DEVICE" timeout -k 15 "$L" "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider \
        --durations=5 2>&1 | tee "$OUT/cuda_tests.txt"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { FAILED="$FAILED cuda_tests"; echo "pytest: exit $rc (124: over its ${L} s limit)"; }
fi

L=$(limit "$TORCHRUN_LIMIT")
step "torchrun --nproc-per-node 1 -m cortex_cli --device $DEVICE index (limit ${L} s)"
if enough torchrun_index "$L"; then
    CORTEX_HOME=$(mktemp -d) timeout -k 15 "$L" "$PY" -m torch.distributed.run --nproc-per-node 1 -m cortex_cli --device "$DEVICE" \
        index --class "red-capped bird" -n 32 --json 2>&1 | tee "$OUT/torchrun_index.txt"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { FAILED="$FAILED torchrun_index"; echo "torchrun index: exit $rc (124: over its ${L} s limit)"; }
fi

L=$(limit "$API_LIMIT")
step "api_device_check.py --device $DEVICE (limit ${L} s)"
if enough api_device "$L"; then
    timeout -k 15 "$L" "$PY" benchmarks/api_device_check.py --device "$DEVICE" --images 50 --json-out "$OUT/api_device.json" 2>&1 \
        | tee "$OUT/api_device.txt"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { FAILED="$FAILED api_device"; echo "api_device_check.py: exit $rc (124: over its ${L} s limit)"; }
fi

L=$(limit "$BENCH_LIMIT")
step "bench_sampling.py --device $DEVICE --batch $SAMPLING_BATCH (limit ${L} s)"
if enough bench_sampling "$L"; then
    timeout -k 15 "$L" "$PY" benchmarks/bench_sampling.py --device "$DEVICE" --batch "$SAMPLING_BATCH" --repeats "$REPEATS" --threads "$THREADS" 2>&1 \
        | tee "$OUT/bench_sampling_${CARD}.txt"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { FAILED="$FAILED bench_sampling"; echo "bench_sampling.py: exit $rc (124: over its ${L} s limit)"; }
fi

L=$(limit "$BENCH_LIMIT")
step "bench_saliency.py --device $DEVICE (limit ${L} s)"
if ! "$PY" benchmarks/bench_saliency.py --help 2>/dev/null | grep -q -- "--device"; then
    echo "bench_saliency.py: skipped, it takes no --device (it measures on the CPU)" | tee "$OUT/bench_saliency_${CARD}.txt"
elif enough bench_saliency "$L"; then
    timeout -k 15 "$L" "$PY" benchmarks/bench_saliency.py --device "$DEVICE" 2>&1 | tee "$OUT/bench_saliency_${CARD}.txt"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { FAILED="$FAILED bench_saliency"; echo "bench_saliency.py: exit $rc (124: over its ${L} s limit)"; }
fi

if [ "$LLAMAGEN" != 0 ]; then
    RESERVED=0
    L=$(limit "$LG_LIMIT")
    B=$(( L - 90 ))  # the generation stage compiles last: leave it its time
    [ "$B" -gt 0 ] || B=0
    step "paper_scale.py --model llamagen --gpt-model $LG_GPT --image-size $LG_IMAGE_SIZE --size $SIZE --device $DEVICE --budget-s $B (limit ${L} s) -> paper_scale_llamagen_${CARD}.json"
    if enough paper_scale_llamagen "$L"; then
        timeout -k 15 "$L" "$PY" benchmarks/paper_scale.py --model llamagen --gpt-model "$LG_GPT" --image-size "$LG_IMAGE_SIZE" \
            --size "$SIZE" --device "$DEVICE" --budget-s "$B" --threads "$THREADS" \
            --json-out "$OUT/paper_scale_llamagen_${CARD}.json" 2>&1 | tee "$OUT/paper_scale_llamagen_${CARD}.txt"
        rc=${PIPESTATUS[0]}
        [ "$rc" -eq 0 ] || { FAILED="$FAILED paper_scale_llamagen"; echo "paper_scale.py --model llamagen: exit $rc (124: over its ${L} s limit; the JSON holds the stages it finished)"; }
    fi
fi

step "done"
ls -l "$OUT"
if [ -n "$FAILED" ]; then
    echo "FAILED:$FAILED"
    exit 1
fi
echo "all steps passed"
