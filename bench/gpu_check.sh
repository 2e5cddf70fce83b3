#!/usr/bin/env bash
# The device check in one command (~5 min on one GPU, nothing carried): each check in its own process under
# its own time cap, each row appended to $OUT/gpu_check.md as it finishes, so a cap or a crash keeps the rest.
#   bash bench/gpu_check.sh                 # OUT defaults to ./gpu_check_out
# spell is imported from this checkout (no install): the checks need only torch and transformers.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
table="$out/gpu_check.md"
python3 bench/gpu_check.py --header --out "$table"
for spec in env:30 lora_preset:90 calibration:60 attention:60 reserve:50 sync_rates:30 fsdp_offload:45; do
    name=${spec%%:*}
    cap=${spec##*:}
    timeout "$cap" python3 bench/gpu_check.py --only "$name" --out "$table" >>"$out/log.txt" 2>&1
    rc=$?
    if [ "$rc" -eq 124 ]; then
        echo "| $name | stopped at its ${cap} s cap; see log.txt |" >>"$table"
    elif [ "$rc" -ne 0 ]; then
        echo "| $name | exited $rc; see log.txt |" >>"$table"
    fi
done
cat "$table"
