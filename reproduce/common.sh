# Sourced by the reproduction scripts: the lord.py command, the dataset arguments, and pipeline steps
# that skip what an earlier run of the script already finished (and resume an interrupted stage),
# so a script can simply be started again. Settings come from the environment:
#
#   BASE_DIR   where data, models and results go (default: runs)
#   SEEDS      training seeds, e.g. "0 1 2" (default: 0); one model per data set and seed
#   DEVICE     auto, cpu or cuda (default: auto)
#   N_PAIRS    translation pairs per evaluation (default: 1000)
#   PYTHON     the interpreter (default: python)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_DIR="${BASE_DIR:-runs}"
SEEDS="${SEEDS:-0}"
DEVICE="${DEVICE:-auto}"
N_PAIRS="${N_PAIRS:-1000}"
PYTHON="${PYTHON:-python}"
SPLIT_SEED=0

lord() {
    "$PYTHON" "$REPO_ROOT/lord.py" --base-dir "$BASE_DIR" --device "$DEVICE" "$@"
}

usage() {
    printf 'error: %s\n%s\n' "$1" "$USAGE" >&2
    exit 2
}

# dataset_dir VARIABLE [ARGUMENT]: the raw dataset directory, from the argument or else from $VARIABLE.
dataset_dir() {
    local variable=$1
    local value=${2:-${!variable:-}}
    [[ -n "$value" ]] || usage "give the $variable directory as an argument or in \$$variable"
    [[ -d "$value" ]] || usage "$variable: $value is not a directory"
    printf '%s\n' "$value"
}

data_exists() {
    [[ -f "$BASE_DIR/cache/preprocess/$1.npz" ]]
}

# preprocess DATA_NAME PREPROCESS_ARGS...
preprocess() {
    local name=$1
    shift
    if data_exists "$name"; then
        echo "== $name: preprocessed already"
        return
    fi
    lord preprocess -dn "$name" "$@"
}

# split_samples DATA_NAME TEST_SHARE: DATA_NAME-train and DATA_NAME-test, one fixed split for every seed.
split_samples() {
    local name=$1 share=$2
    if data_exists "$name-train" && data_exists "$name-test"; then
        echo "== $name: split already"
        return
    fi
    lord --seed "$SPLIT_SEED" split-samples -idn "$name" -trdn "$name-train" -tsdn "$name-test" -ts "$share" --overwrite
}

# train_stage COMMAND MODEL DATA SEED [ARGS...]: COMMAND is train, train-encoders or train-synthesis.
# A finished stage is skipped, an interrupted one resumed from its checkpoint; a stage that never got
# as far as a checkpoint starts over (--overwrite replaces that unfinished stage only, or for `train`
# the unfinished model).
train_stage() {
    local command=$1 model=$2 data=$3 seed=$4
    shift 4
    local stage
    case "$command" in
        train) stage=latent ;;
        train-encoders) stage=amortized ;;
        train-synthesis) stage=synthesis ;;
        *) echo "train_stage: unknown command $command" >&2; exit 2 ;;
    esac
    local model_dir="$BASE_DIR/cache/models/$model"
    if [[ -f "$model_dir/$stage.pt" ]]; then
        echo "== $model: $stage stage done already"
    elif [[ -f "$model_dir/checkpoint-$stage.pt" ]]; then
        lord --seed "$seed" "$command" -dn "$data" -mn "$model" --resume
    else
        lord --seed "$seed" "$command" -dn "$data" -mn "$model" --overwrite "$@"
    fi
}

# evaluate MODEL DATA STAGE SEED RESULTS_DIR: writes RESULTS_DIR/MODEL-DATA-STAGE.json
evaluate() {
    local model=$1 data=$2 stage=$3 seed=$4 results=$5
    lord --seed "$seed" evaluate -mn "$model" -dn "$data" --stage "$stage" --n-pairs "$N_PAIRS" \
        --output "$results/$model-$data-$stage.json"
}

# report RESULTS_DIR [REPORT_ARGS...]: the table of every result there, printed and kept as table.md
report() {
    local results=$1
    shift
    lord report "$results"/*.json "$@" > "$results/table.md"
    cat "$results/table.md"
}

# report_over_seeds RESULTS_DIR [REPORT_ARGS...]: one row per model with each metric's mean and standard
# deviation over its seeds, printed and kept as table-over-seeds.md
report_over_seeds() {
    local results=$1
    shift
    lord report "$results"/*.json --over-seeds "$@" > "$results/table-over-seeds.md"
    cat "$results/table-over-seeds.md"
}
