#!/usr/bin/env bash
# One GPU session on the lent device, in short calls (a call's command is at most 2,000 characters; its carried
# files are removed by the next call that does not name them, and the machine keeps nothing once given back).
#
#   bash bench/gpu_session.sh keep                 # each carrying call: copy the carried parts to /tmp/parts
#   bash bench/gpu_session.sh install [SET...]     # assemble and install the wheel sets (default: loop vllm), write
#                                                  # /tmp/vllm-python where vllm is among them
#   bash bench/gpu_session.sh background CHAIN...  # runs of bench/gpu_runs.sh in the background (setsid), from a
#                                                  # copy of the repo in /tmp/repo, logs in /tmp/runs/NAME.log; a
#                                                  # CHAIN is one name or several ("a b": b after a), chains at once
#   bash bench/gpu_session.sh wait SECONDS [NAME]  # until every background run (or run NAME) ended, or SECONDS passed
#   bash bench/gpu_session.sh collect              # run stores (models left out) and logs, one tar into $OUT
#   bash bench/gpu_session.sh restore TGZ          # a collected runs.tgz carried back (under .device/), unpacked
#                                                  # into /tmp/runs: a run resumes its store (more replicates)
#
# The machine goes back 30 s after a call ends, whatever runs in the background: keep a `wait` call in flight for
# as long as runs go on, and `collect` in the last call (on 2026-12-07 a 24-replicate comparison and every figure
# of the run before it went with a machine released while a script was being written between calls).
#
# Starting one (2026-12-07): a failed start costs about 90 s of device time and locks that kind out for about 4-5
# minutes; a call during a lockout is refused at 15 s, so wait the minutes the refusal names before the next try. A
# call naming nvidia-h200 may be given an H100; keep naming the same kind for every call of the lease, or the held
# machine goes back. Put the runs that must not be lost first in a chain, and collect after each.
# On 2026-12-08 a machine handed back with 695 s left could not be had again: one start failed, the lockouts that
# followed ran past the point where about 290 s were left, and below that no start is tried. Queue what the lease
# should also measure before giving it back, rather than planning a second lease.
#
# Queued for the next lease (issue 22), in this order, each alone on the card, collecting after each:
#   levers-graphs (about 6 min), nll-graphs-pool (about 2 min), default-gpu-compile (about 6 min), levers-1b (about
#   4 min), and on an H200 workers-async (its 8 workers need more than 80 GB). On an H100 that is one chain:
#   background "levers-graphs nll-graphs-pool default-gpu-compile levers-1b", then wait calls until it ends, then
#   collect.
#
# The parts are built here by `python3 bench/device_wheels.py` (.device/parts/, git-ignored); each call carries one
# ([".device/parts/vllm.tar.part00"], ...). Python there: the image's python3 (torch 2.11.0+cu130).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
case "${1:-}" in
  keep)
    mkdir -p /tmp/parts && cp .device/parts/*.tar.part* /tmp/parts/
    if [ -d .device/gsm8k ]; then cp -r .device/gsm8k /tmp/; fi  # for paper-round runs: carry .device/gsm8k once
    ls -la /tmp/parts ;;
  install)
    shift
    sets="${*:-loop vllm}"
    for set in $sets; do
      mkdir -p "/tmp/wheels-$set"
      cat /tmp/parts/"$set".tar.part* | tar -x -C "/tmp/wheels-$set"
      python3 -m pip install -q --no-index --no-deps --no-compile --target "/tmp/site-$set" /tmp/wheels-"$set"/*.whl
    done
    if [[ " $sets " == *" vllm "* ]]; then
      # The server launcher drops PYTHONPATH from the server's environment: a wrapper puts vLLM's packages back.
      # flashinfer is not carried: its sampler is switched off (vLLM's PyTorch/Triton sampler serves).
      printf '%s\n' '#!/bin/sh' 'export VLLM_USE_FLASHINFER_SAMPLER=0' \
        "PYTHONPATH=/tmp/site-vllm exec $(command -v python3) \"\$@\"" > /tmp/vllm-python
      chmod +x /tmp/vllm-python
      /tmp/vllm-python -c "import vllm.entrypoints.openai.api_server, vllm; print('vllm', vllm.__version__)"
    fi
    PYTHONPATH=/tmp/site-loop:$PWD python3 -c "import trl, polars, loop.run.engine; print('trl', trl.__version__)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader ;;
  background)
    shift
    # One copy a session: a later call must not replace the code under runs still going (their workers import it).
    if [ ! -d /tmp/repo ]; then cp -r "$PWD" /tmp/repo && rm -rf /tmp/repo/.device; fi
    mkdir -p /tmp/runs
    for chain in "$@"; do
      setsid nohup bash -c 'for name in $0; do bash /tmp/repo/bench/gpu_runs.sh "$name" > "/tmp/runs/$name.log" 2>&1; done' \
        "$chain" < /dev/null > /dev/null 2>&1 &
      echo "started: $chain"
    done ;;
  wait)
    deadline=$(( $(date +%s) + ${2:-540} )) pattern="bench/gpu_runs.sh ${3:-}"
    while pgrep -f "$pattern" > /dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 10; done
    for log in /tmp/runs/*.log; do echo "== $log"; tail -n 4 "$log"; done
    pgrep -f bench/gpu_runs.sh > /dev/null && echo "STILL RUNNING" || echo "ALL ENDED" ;;
  collect)  # one tar of every run store (models left out) and log: a call brings back only a few files
    mkdir -p "$OUT"
    tar -C /tmp/runs -czf "$OUT/runs.tgz" --exclude='*.safetensors' --exclude='*.gguf' --exclude='*.bin' .
    ls -la "$OUT" ;;
  restore)
    mkdir -p /tmp/runs && tar -xzf "$2" -C /tmp/runs && ls /tmp/runs ;;
  *)
    echo "usage: $0 keep|install|background NAME...|wait SECONDS|collect|restore TGZ" >&2; exit 2 ;;
esac
