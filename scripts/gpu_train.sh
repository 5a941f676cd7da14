#!/usr/bin/env bash
# One prepared training run for a lent GPU machine (docs/training.md, "A lent GPU").
#
# Continues the shipped teacher on the POP909 cache for TEACHER_MINUTES, then distils the
# shipped student from that teacher for STUDENT_MINUTES (the shipped recipe: guidance scales
# 1-3, the sustain channel at share 0; EMA 0.999), each under `--max-minutes`, so the run ends with
# weights however fast the machine is. What comes back fits the device tool's limits
# (at most 8 files, 16 MiB each): both exported models (bf16, 7 MB each, config.json),
# both runs' log.csv, the teacher's step profile and env.txt: eight, so tee nothing more. Compare them here before shipping anything
# (docs/training.md says how).
#
# On the device tool:  run(command="bash scripts/gpu_train.sh", carry=["data_cache"])
# Anywhere else:       OUT=out DEVICE=cpu TEACHER_MINUTES=1 STUDENT_MINUTES=1 bash scripts/gpu_train.sh
#
# TEACHER=none trains the teacher from random weights instead; TEACHER_ARGS and STUDENT_ARGS
# add `trainer train` arguments to each run, e.g. a teacher that reads the figuration from its
# first step (docs/training.md, "A lent GPU"):
#   TEACHER=none TEACHER_ARGS="--set global_dim=17" \
#   STUDENT_ARGS="--set global_dim=17 --lr-scale tokens.global_proj=30" bash scripts/gpu_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:?set OUT to the folder that receives the results}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-data_cache/pop909}
TEACHER=${TEACHER:-checkpoints/diffbgm-small-teacher}
STUDENT=${STUDENT:-checkpoints/diffbgm-small}
TEACHER_MINUTES=${TEACHER_MINUTES:-4}
STUDENT_MINUTES=${STUDENT_MINUTES:-3}
TEACHER_ARGS=${TEACHER_ARGS:-}  # more `trainer train` arguments, split on spaces
STUDENT_ARGS=${STUDENT_ARGS:-}
BATCH=${BATCH:-256}
TEACHER_LR=${TEACHER_LR:-2e-4}
STUDENT_LR=${STUDENT_LR:-1e-4}
# the shipped student's 400 CPU steps used 0.99; thousands of GPU steps average over more
STUDENT_EMA=${STUDENT_EMA:-0.999}
TEACHER_EMA=${TEACHER_EMA:-0.999}
# batch-building processes; empty: the trainer's default (min(8, cores - 1) on a GPU)
DATA_WORKERS=${DATA_WORKERS:-}
# teacher steps profiled into teacher_profile.txt (where a step's time goes; 0: none)
PROFILE_STEPS=${PROFILE_STEPS:-20}
VAL_EVERY=${VAL_EVERY:-250}
VAL_WINDOWS=${VAL_WINDOWS:-64}
WORK=${WORK:-$(mktemp -d)}  # run folders (with optimizer state: too large to send back)
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

mkdir -p "$OUT"
{
    date -u
    "$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
    nproc
    df -h /dev/shm 2>/dev/null | tail -1 || true
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
test -d "$DATA" || { echo "no POP909 cache at $DATA: carry data_cache" >&2; exit 2; }

train() {  # run folder, minutes, extra arguments...
    local run=$1 minutes=$2
    shift 2
    "$PYTHON" -m trainer train --device "$DEVICE" --preset small --data "$DATA" --run "$run" \
        --steps 1000000 --batch "$BATCH" --schedule constant --warmup 50 \
        --val-every "$VAL_EVERY" --val-windows "$VAL_WINDOWS" --ckpt-every 500 --log-every 20 --no-progress \
        --set selector=learned --max-minutes "$minutes" ${DATA_WORKERS:+--data-workers "$DATA_WORKERS"} "$@"
}

export_to() {  # run folder, destination (no model card: the device tool brings back 8 files)
    "$PYTHON" -m trainer export "$1" "$2" --dtype bf16
    rm -f "$2/README.md"
}

teacher_start=(--init-from "$TEACHER")
if [ "$TEACHER" = none ]; then teacher_start=(); fi
echo "== teacher: $TEACHER_MINUTES minutes from ${TEACHER/#none/random weights} $TEACHER_ARGS"
# shellcheck disable=SC2086  # the extra arguments are meant to split
train "$WORK/teacher" "$TEACHER_MINUTES" "${teacher_start[@]}" --lr "$TEACHER_LR" \
    --ema-decay "$TEACHER_EMA" --profile-steps "$PROFILE_STEPS" $TEACHER_ARGS
export_to "$WORK/teacher" "$OUT/teacher"
cp "$WORK/teacher/log.csv" "$OUT/teacher_log.csv"
if [ -f "$WORK/teacher/profile.txt" ]; then cp "$WORK/teacher/profile.txt" "$OUT/teacher_profile.txt"; fi

echo "== student: $STUDENT_MINUTES minutes from $STUDENT, distilled from the new teacher $STUDENT_ARGS"
# shellcheck disable=SC2086
train "$WORK/student" "$STUDENT_MINUTES" --init-from "$STUDENT" --lr "$STUDENT_LR" \
    --set guidance_embedding=true --distill-from "$OUT/teacher" --distill-scales 1 3 \
    --distill-sustain-share 0 --ema-decay "$STUDENT_EMA" $STUDENT_ARGS
export_to "$WORK/student" "$OUT/student"
cp "$WORK/student/log.csv" "$OUT/student_log.csv"

echo "== done: $(find "$OUT" -type f | wc -l) files in $OUT"
