#!/usr/bin/env bash
# The measured runs of a GPU session, by name (bench/gpu_session.sh starts them in the background). Each writes its
# run store under /tmp/runs/NAME/ and prints its steps, wall time and report summary; `time` gives the wall clock.
#
#   smollm2-embedded           the real-model comparison preset (8 replicates)
#   analyze-smollm2-embedded   the paper's analyses on the same model and task (4 replicates)
#   default-gpu                the embedded comparison at the size that separates strategies (16 replicates)
#   default-gpu-compile        default-gpu with compiled layers (run after default-gpu, each alone: the wall clocks
#                              and the train stage's seconds say whether compile pays across a worker's steps)
#   default-gpu-auto           default-gpu with auto (lookahead on, the default) over premem, loss and perplexity,
#                              every fixed arm it chooses from, and auto_bandit (the same auto, lookahead off: what
#                              the probes add), 16 replicates, compute-matched off as in the 2026-12-01 auto runs
#   default-gpu-auto-probes    default-gpu with auto three ways, as run on 2026-12-07: probes of half the round's
#                              epochs (auto, the default then), the same averaged over 3 training seeds (auto_r3),
#                              probes of the round's epochs (auto_full, the default since), beside every fixed arm
#                              they choose from, 16 replicates: what sharpening a probe buys
#   default-gpu-auto-holdout   auto_h128 (probes of the round's epochs, the default, also scoring 128 pool items they
#                              keep back) added to default-gpu-auto-probes's 16-replicate store of 2026-12-07, which
#                              `restore` unpacks first: only its 16 chains run (about 5 minutes beside the next)
#   smollm2-embedded-auto-holdout  auto_h128 added to smollm2-embedded-auto's store (about 10 minutes beside the
#                              last); smollm2-embedded-auto-full then adds auto_full (the default probes, no holdout).
#                              In both stores the entry `auto` without lookahead_epochs ran half-epoch probes, the
#                              default when they ran
#   smollm2-embedded-auto      the real-model preset at 16 replicates with auto (lookahead) over premem and loss,
#                              beside both fixed arms (issue 24's second comparison); about 25 minutes (run on
#                              2026-12-07 with half-epoch probes, the default then)
#   smollm2-embedded-auto-half its replicates 0-7 alone (for a lease too short for all 16): a later lease restores
#                              the store and runs smollm2-embedded-auto, which adds replicates 8-15
#   vllm-tests                 tests/vllm and tests/gpu against the GPU build of vLLM
#   vllm-tests-failed          the three vLLM tests that failed on the H200 on 2026-12-06, and tests/gpu
#   vllm-0.5b, vllm-8b         bench/bench_vllm.py on the Qwen2.5-0.5B and Llama-3.1-8B shapes (with --reload)
#   vllm-0.5b-engines          the 0.5B shape's sampling engines alone on the card (as vllm-8b-engines)
#   vllm-8b-engines            the 8B shape's sampling engines alone on the card (the loop's vLLM, bare vLLM, the
#                              decode loop; no reload and no generate, both measured on 2026-12-06)
#   paper-8b-lora              bench/paper_round.py: one paper-settings round of a Llama-3.1-8B shape with LoRA, vLLM
#                              sampling, on 50 seeds scaled to 1,000 (GSM8K carried to /tmp/gsm8k by `keep`)
#   paper-1.5b-full            the same for a Qwen2.5-1.5B shape, full fine-tuning
#   paper-1.5b-full-decode     the 1.5B round with the decode loop sampling, on 20 seeds
#   paper-8b-lora-decode       the 8B round with the decode loop sampling, on 20 seeds
#   levers                     bench/bench_gpu.py: the training-step levers one by one, NLL heads, 1/2/4 workers
#   levers-short               the training levers alone on 1,024 examples (no NLL, no workers)
#   levers-compile             the step before the levers, the lean step and the lean step with compiled layers,
#                              1,536 examples with profiles (no NLL, no workers: those did not change since 12-06)
#   compile-reuse              what compiling costs a second train call: in the same process (two compiled train
#                              calls), and in a new process with Inductor's disk cache warm (then the lean step)
#   workers-8                  1 and 8 lean-step workers sharing the card, micro-batches of 16 x 2 (an H200)
#   levers-async               the asynchronous step (train.async_step) beside the step before the levers, the lean
#                              step and compiled layers, with profiles (read-backs per step), 1,536 examples
#   workers-async              1, 2, 4 (and 8 on a card of more than 100 GB) asynchronous lean-step workers sharing
#                              the card, 16 x 2 micro-batches
#   levers-1b                  the default and the best step on the Llama-3.2-1B shape, with profiles: their MFU and
#                              kernel bound at a size users run (the 0.5B step's kernels bound it at 29.7%; about 4
#                              minutes)
#   levers-tests               tests/gpu (the new training step against the old one on the card)
#   levers-graphs              tests/gpu's CUDA-graph step against the old one, then the asynchronous step eager,
#                              compiled, compiled on batches padded to 32 tokens, and as CUDA graphs (train.cuda_graphs) in two train
#                              calls (a later round's model records its graphs again), 1,536 examples with
#                              profiles (about 6 minutes)
#   nll-async                  bench/bench_gpu.py's peak and nll sections: the NLL scorer's variants (bench/gpu_nll.py),
#                              the asynchronous scorer among them, with profiles; then tests/gpu's NLL test on the card
#   nll-quick                  the host profiles (with and without the mask builder), then seven NLL variants
#                              (masked, asynchronous with and without the mask builder, on fixed and mixed lengths,
#                              compiled)
#   nll-graphs                 tests/gpu's CUDA-graph NLL test, then the NLL scorer with and without CUDA graphs
#                              on fixed and mixed lengths (about 1 minute)
#   nll-graphs-pool            the scorer eager, as CUDA graphs and with compiled layers on a call of 4,096 mixed
#                              lengths (a pool's), and compiled on 256 mixed lengths (about 2 minutes)
#   nll-host-profile           bench/nll_host_profile.py: the host's ops in one NLL call, asynchronous and masked
#   default-gpu-auto-16        a fresh default-gpu comparison at the preset's 16 replicates: auto with today's defaults
#                              (lookahead, full-epoch probes, 128 pool items kept back) over premem, loss and
#                              perplexity, beside every fixed arm, compute-matched off as in the earlier auto runs
#                              (about 11 minutes); default-gpu-auto-24 the same at 24 replicates (about 16 minutes)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=/tmp/site-loop:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export CURATION_LOOP_VLLM_PYTHON=/tmp/vllm-python
LEVER_RUNS=preset_32x1,lean_32x1,lean_liger_32x1,lean_compile_32x1  # the step before the levers, then each lever
out=/tmp/runs/$1
case "$1" in
  smollm2-embedded|default-gpu)
    time python3 bench/run_engine.py --preset "$1" --out "$out" ;;
  default-gpu-compile)  # compiled layers end to end: each of the 8 workers compiles once, then trains its steps
    time python3 bench/run_engine.py --preset default-gpu --out "$out" train.compile=true ;;
  default-gpu-auto)
    arms='arms: [premem, loss, perplexity]'
    time python3 bench/run_engine.py --preset default-gpu --out "$out" selection.compute_matched=false \
      "selection.strategies=[random, premem, loss, perplexity, {name: auto, params: {$arms}},
        {name: auto, label: auto_bandit, params: {$arms, lookahead: false}}]" ;;
  default-gpu-auto-probes)
    arms='arms: [premem, loss, perplexity]'
    time python3 bench/run_engine.py --preset default-gpu --out "$out" selection.compute_matched=false \
      "selection.strategies=[random, premem, loss, perplexity, {name: auto, params: {$arms, lookahead_epochs: 4}},
        {name: auto, label: auto_r3, params: {$arms, lookahead_epochs: 4, lookahead_repeats: 3}},
        {name: auto, label: auto_full, params: {$arms, lookahead_epochs: 8}}]" ;;
  default-gpu-auto-holdout)  # the stored list as it ran (see default-gpu-auto-probes), then the added competitor
    arms='arms: [premem, loss, perplexity]'
    time python3 bench/run_engine.py --preset default-gpu --out /tmp/runs/default-gpu-auto-probes \
      selection.compute_matched=false "selection.strategies=[random, premem, loss, perplexity, {name: auto, params: {$arms}},
        {name: auto, label: auto_r3, params: {$arms, lookahead_repeats: 3}},
        {name: auto, label: auto_full, params: {$arms, lookahead_epochs: 8}},
        {name: auto, label: auto_h128, params: {$arms, lookahead_holdout: 128}}]" ;;
  smollm2-embedded-auto-holdout|smollm2-embedded-auto-full)  # the stored list as it ran, then the added ones
    arms='arms: [premem, loss]'
    added="{name: auto, label: auto_h128, params: {$arms, lookahead_holdout: 128}}"
    if [ "$1" = smollm2-embedded-auto-full ]; then added="$added, {name: auto, label: auto_full, params: {$arms}}"; fi
    time python3 bench/run_engine.py --preset smollm2-embedded --out /tmp/runs/smollm2-embedded-auto \
      "seeds=[$(seq -s ', ' 0 15)]" sampling.engine=decode \
      "selection.strategies=[random, premem, loss, {name: auto, params: {$arms}}, $added]" ;;
  smollm2-embedded-auto|smollm2-embedded-auto-half)
    # The half runs replicates 0-7 into the same store; a later lease restores it (gpu_session.sh restore) and
    # smollm2-embedded-auto adds replicates 8-15 to it. The engine is pinned: a resume under another one stops.
    seeds='0, 1, 2, 3, 4, 5, 6, 7'
    if [ "$1" = smollm2-embedded-auto ]; then seeds="$seeds, 8, 9, 10, 11, 12, 13, 14, 15"; fi
    time python3 bench/run_engine.py --preset smollm2-embedded --out /tmp/runs/smollm2-embedded-auto \
      "seeds=[$seeds]" sampling.engine=decode \
      'selection.strategies=[random, premem, loss, {name: auto, params: {arms: [premem, loss]}}]' ;;
  analyze-smollm2-embedded)
    time python3 bench/run_engine.py --analyze --preset "$1" --out "$out" ;;
  vllm-tests)
    # The out-of-memory test fills the card: left out while other runs share it.
    time python3 -m pytest -q -p no:cacheprovider tests/vllm tests/gpu --durations=10 -k "not nearly_full" ;;
  vllm-tests-failed)
    time python3 -m pytest -q -p no:cacheprovider tests/vllm tests/gpu --durations=10 -k "not nearly_full and \
      (tokenizes_as_the_loop or teacher_on_the_server or dies_mid_round or gpu)" ;;
  vllm-0.5b)
    time python3 bench/bench_vllm.py --shape qwen2.5-0.5b --out "$out" --reload --gpu-memory-utilization 0.2 ;;
  vllm-8b)
    time python3 bench/bench_vllm.py --shape llama-3.1-8b --out "$out" --reload --gpu-memory-utilization 0.5 ;;
  vllm-0.5b-engines)
    time python3 bench/bench_vllm.py --shape qwen2.5-0.5b --out "$out" --engines loop,bare,decode --repeats 2 \
      --gpu-memory-utilization 0.2 ;;
  vllm-8b-engines)
    time python3 bench/bench_vllm.py --shape llama-3.1-8b --out "$out" --engines loop,bare,decode --repeats 2 \
      --gpu-memory-utilization 0.5 ;;
  paper-8b-lora)  # micro-batch 8 x 4 keeps the effective batch of 32 beside a vLLM server on a 78 GiB card
    time python3 bench/paper_round.py --shape llama-3.1-8b --lora --data /tmp/gsm8k --out "$out" --run-seeds 50 \
      train.batch_size=8 train.gradient_accumulation_steps=4 vllm.gpu_memory_utilization=0.45 ;;
  paper-8b-lora-decode)
    time python3 bench/paper_round.py --shape llama-3.1-8b --lora --data /tmp/gsm8k --out "$out" --run-seeds 20 \
      --engine decode train.batch_size=8 train.gradient_accumulation_steps=4 ;;
  paper-1.5b-full)  # as measured on 2026-12-07: 8 x 4 micro-batches beside a server on a quarter of the card
    time python3 bench/paper_round.py --shape qwen2.5-1.5b --data /tmp/gsm8k --out "$out" --run-seeds 50 \
      train.batch_size=8 train.gradient_accumulation_steps=4 vllm.gpu_memory_utilization=0.25 ;;
  paper-1.5b-full-decode)
    time python3 bench/paper_round.py --shape qwen2.5-1.5b --data /tmp/gsm8k --out "$out" --run-seeds 20 \
      --engine decode train.batch_size=8 train.gradient_accumulation_steps=4 ;;
  levers)
    time python3 bench/bench_gpu.py --out "$out" --sections peak,nll,training,workers --examples 1536 \
      --train-runs $LEVER_RUNS \
      --workers 1,2,4 --worker-examples 768 --results "$out/results.json" ;;
  levers-short)  # the training levers alone, for a lease with a few minutes left
    time python3 bench/bench_gpu.py --out "$out" --sections training --examples 1024 \
      --train-runs $LEVER_RUNS ;;
  levers-compile)
    time python3 bench/bench_gpu.py --out "$out" --sections training --examples 1536 \
      --train-runs preset_32x1,lean_32x1,lean_compile_32x1 --results "$out/results.json" ;;
  workers-8)  # at 32 x 1 a lean-step worker peaks at 24.5 GB: 8 fit no card, so the same step in 16 x 2 (an H200)
    time python3 bench/bench_gpu.py --out "$out" --sections workers --workers 1,8 --worker-examples 768 \
      --worker-run lean_16x2 ;;
  levers-async)
    time python3 bench/bench_gpu.py --out "$out" --sections training --examples 1536 \
      --train-runs preset_32x1,lean_32x1,lean_async_32x1,lean_compile_32x1,lean_async_compile_32x1 \
      --results "$out/results.json" ;;
  workers-async)  # 8 workers of about 16 GB each fit only an H200
    counts=1,2,4
    if [ "$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)" -gt 100000 ]; then
      counts=1,2,4,8
    fi
    time python3 bench/bench_gpu.py --out "$out" --sections workers --workers "$counts" --worker-examples 768 \
      --worker-run lean_async_16x2 ;;
  compile-reuse)
    time python3 bench/bench_gpu.py --out "$out/same-process" --sections training --examples 512 --no-profile \
      --train-runs lean_compile_32x1,lean_compile_32x1
    time python3 bench/bench_gpu.py --out "$out/new-process" --sections training --examples 512 --no-profile \
      --train-runs lean_compile_32x1,lean_32x1 ;;
  levers-graphs)  # the GPU test first: the bench's figures mean nothing if the graphs train something else
    time python3 -m pytest -q -p no:cacheprovider tests/gpu/test_training_levers_cuda.py -k "graphs or lean+async"
    runs=lean_async_32x1,lean_async_compile_32x1,lean_async_compile_b32_32x1,lean_async_graphs_32x1
    time python3 bench/bench_gpu.py --out "$out" --sections training --examples 1536 \
      --train-runs "$runs,lean_async_graphs_32x1" --results "$out/results.json" ;;
  levers-1b)  # 1.24B parameters: about 20 GB of weights, gradients and AdamW state, with 32 x 1 micro-batches
    time python3 bench/bench_gpu.py --out "$out" --shape llama-3.2-1b --sections training --examples 1536 \
      --train-runs lean_async_32x1,lean_async_compile_32x1 ;;
  levers-tests)
    time python3 -m pytest -q -p no:cacheprovider tests/gpu --durations=5 ;;
  nll-async)
    time python3 bench/bench_gpu.py --out "$out" --sections peak,nll --results "$out/results.json"
    time python3 bench/nll_host_profile.py > "$out/host-profile.txt" 2>&1
    time python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cuda_paths.py -k nll ;;
  nll-quick)  # for a lease of a few minutes: the host profile, then the scorer before, now and compiled
    mkdir -p "$out"
    time python3 bench/nll_host_profile.py > "$out/host-profile.txt" 2>&1
    time python3 bench/nll_host_profile.py --mask-builder > "$out/host-profile-mask-builder.txt" 2>&1
    variants=(fp32_master_bf16_autocast_trl_head fp32_master_bf16_autocast_trl_head_async_rows64_mask_builder
      fp32_master_bf16_autocast_trl_head_async_rows64 mixed_lengths_trl_head_rows64
      mixed_lengths_trl_head_async_rows64_mask_builder mixed_lengths_trl_head_async_rows64
      fp32_master_bf16_autocast_trl_head_async_compiled)
    time python3 bench/bench_gpu.py --out "$out" --sections nll --results "$out/results.json" \
      --nll-variants "$(IFS=,; echo "${variants[*]}")" ;;
  nll-graphs)  # the backbone as CUDA graphs (dynamics.nll_cuda_graphs) beside the default, fixed and mixed lengths
    variants=(fp32_master_bf16_autocast_trl_head_async_rows64 fp32_master_bf16_autocast_trl_head_async_rows64_cuda_graphs
      mixed_lengths_trl_head_async_rows64 mixed_lengths_trl_head_async_rows64_cuda_graphs)
    time python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cuda_paths.py -k cuda_graphs
    time python3 bench/bench_gpu.py --out "$out" --sections nll --results "$out/results.json" \
      --nll-variants "$(IFS=,; echo "${variants[*]}")" ;;
  nll-graphs-pool)  # the same on a pool-sized call (4,096 mixed lengths), where the captures are spread thinner
    variants=(pool_lengths_trl_head_async_rows64 pool_lengths_trl_head_async_rows64_cuda_graphs
      mixed_lengths_trl_head_async_rows64_compiled pool_lengths_trl_head_async_rows64_compiled)
    time python3 bench/bench_gpu.py --out "$out" --sections nll --results "$out/results.json" \
      --nll-variants "$(IFS=,; echo "${variants[*]}")" ;;
  nll-host-profile)  # the host side of one NLL call, asynchronous and masked (about 1 minute)
    mkdir -p "$out"
    time python3 bench/nll_host_profile.py > "$out/async.txt" 2>&1
    time python3 bench/nll_host_profile.py --sync > "$out/sync.txt" 2>&1 ;;
  default-gpu-auto-16|default-gpu-auto-24)
    arms='arms: [premem, loss, perplexity]'
    time python3 bench/run_engine.py --preset default-gpu --out "$out" selection.compute_matched=false \
      "seeds=[$(seq -s ', ' 0 $(( ${1##*-} - 1 )))]" "selection.strategies=[random, premem, loss, perplexity, {name: auto, params: {$arms}}]" ;;
  *)
    echo "unknown run $1" >&2; exit 2 ;;
esac
