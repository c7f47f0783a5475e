#!/usr/bin/env bash
# Compares shapes-world generator designs at the step counts a 2-core CPU reaches in the transformer
# phase of models.shapes.train_generator (measured CPU s/step x CPU seconds), by training each on a
# GPU with --steps and scoring it with bench.generator_accuracy. Used to choose the shipped
# defaults; the shipped models themselves are trained on the CPU.
#   bash bench/generator_sweep.sh OUT_DIR [SWEEP]   (on a machine with a CUDA GPU; about 9 minutes)
# SWEEP "design" (2026-11-27, the 45-minute phase, 2,700 CPU s): VAE factor and transformer width.
# SWEEP "batch" (default; half the phase, 1,350 CPU s, at 0.81 s/step for batches 32+16, 0.40 for
# 16+8 and 0.72 for 32+8): batch size and learning rate at equal CPU time.
# SWEEP "edit" (2026-11-27): the editing model alone (--tasks edit, 2 CPU threads: 0.21 s/step, so
# about 12,000 steps in a 55-minute run), with and without the edit probe. On the lent H200 the four
# runs at once reached only ~4,100 of the 12,000 steps in MINUTES=6.3 (14-16 steps/s each); at true
# CFG 3 they scored no probe 3.5%, probe 1.0 5.0%, probe 3.0 5.5%, batch 16 7.0% (n=200).
set -u
out=${1:-runs/sweep}
mkdir -p "$out"
py=${PYTHON:-python}
device=${DEVICE:-cuda}
div=${STEP_DIVISOR:-1}  # e.g. 1000 for a smoke run on a CPU: DEVICE=cpu STEP_DIVISOR=1000
f8='"vae_channels":[16,32,32,64],"latent_channels":16'
run() {  # name steps lr model-json [more train_generator options]
  local name=$1 steps=$2 lr=$3 model=$4; shift 4
  $py -m models.shapes.train_generator --device "$device" --threads 2 --loader-workers 2 --minutes ${MINUTES:-7.5} --vae-minutes 0.5 --reserve-minutes 0.3 \
      --vae-steps $((2000 / div)) --steps $((steps / div)) --lr "$lr" --model-json "$model" --checkpoint-minutes 100 --eval-minutes 100 "$@" \
      --out "$out/$name" --run-dir "$out/$name/run" > "$out/$name.train.log" 2>&1 &&
  $py -m bench.generator_accuracy --tasks "${BENCH_TASKS:-t2i,edit}" --device "$device" --threads 2 --n $((200 / (div > 1 ? 20 : 1))) --assets "$out/$name" --grid "$out/$name.grid.png" \
      > "$out/$name.json" 2> "$out/$name.bench.log"
  echo "$name steps=$steps lr=$lr $model: $(tail -1 "$out/$name.json" 2>/dev/null)"
}
case ${2:-batch} in
design)
run f8_lr6e-4 5200 6e-4 "{$f8}" &
run f8_lr1.5e-3 5200 1.5e-3 "{$f8}" &
run f8wide_lr1e-3 2900 1e-3 "{$f8,\"heads\":4,\"double_layers\":3,\"single_layers\":3}" &
run f4_lr1.5e-3 3200 1.5e-3 "{}" &
run f8_lr1.5e-3_x2 10400 1.5e-3 "{$f8}" &
;;
batch)
run b32-16_lr1.5e-3 1670 1.5e-3 "{}" &
run b16-8_lr1.5e-3 3375 1.5e-3 "{}" --batch-t2i 16 --batch-edit 8 &
run b16-8_lr1e-3 3375 1e-3 "{}" --batch-t2i 16 --batch-edit 8 &
run b32-8_lr1.5e-3 1875 1.5e-3 "{}" --batch-edit 8 &
;;
edit)
export BENCH_TASKS=edit
run edit_noprobe 12000 1e-3 "{}" --tasks edit --edit-probe-weight 0 &
run edit_probe1 12000 1e-3 "{}" --tasks edit --edit-probe-weight 1 &
run edit_probe3 12000 1e-3 "{}" --tasks edit --edit-probe-weight 3 &
run edit_probe1_b16 7000 1e-3 "{}" --tasks edit --edit-probe-weight 1 --batch-edit 16 &
;;
esac
wait
