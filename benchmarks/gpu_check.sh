#!/usr/bin/env bash
# The one device call a GPU session makes for issue #16 (items 4 and 5). First run 2026-11-27 on one H200
# (exit 0, 129 s); its figures and what it found are in the README's Benchmarks > GPU section.
#
# What it does, in about 3-5 minutes on one H100/H200 (budget: 15 minutes of device time in all):
#   1. bench_gpu --check on the tiny shape in bf16 on cuda (answers and decision probabilities
#      against a float32 CPU reference), then its timings on the tiny shape;
#   2. bench_gpu on the Llama-3-8B shape (random weights, bf16): decision / bare prefill,
#      router respond path / plain generation, decisions per second at batch 1/8/32 and their
#      fraction of the card's bf16 peak;
#   3. rt train smoke on cuda in bf16, LoRA and full, 5 steps each, outputs loaded back on cuda.
# Results land in $OUT (tiny.json, 8b.json and the logs) for the README's GPU section, with the card
# named (versions.txt).
#
# Preparing the call (on the CPU machine, in the repo root). The GPU image has Python 3.12, torch
# 2.11 and transformers 5.17; this project needs transformers>=5.24 and langchain-core, pydantic
# (router), which the image lacks. Carry them as wheels:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     transformers==5.24.0 langchain-core==1.8.3 langchain-protocol langsmith==0.15.1 jsonpatch jsonpointer \
#     tenacity uuid-utils pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection orjson \
#     httpx2 httpcore2 truststore idna certifi requests-toolbelt zstandard distro websockets sniffio gguf typing-extensions
#   (24 MB; the versions in this project's own environment: `pip list` gives them)
#   (check each wheel's Requires-Dist with `unzip -p .whl/NAME-*.whl '*/METADATA' | grep ^Requires-Dist`
#   against the image's package list in the device README's KINDS.md; keep one version of each.)
# Then one call: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
set -uo pipefail
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
status=0
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/versions.txt"

echo "== 1. tiny shape: --check in bf16 on cuda, then timings"
timeout 150 python3 benchmarks/bench_gpu.py --device cuda --shape tiny --dtype bfloat16 --check \
    --json "$OUT/tiny.json" 2>&1 | tee "$OUT/tiny.txt" || status=1

echo "== 2. Llama-3-8B shape, random weights, bf16 (the tiny check runs first again)"
timeout 240 python3 benchmarks/bench_gpu.py --device cuda --shape 8b --dtype bfloat16 --check \
    --json "$OUT/8b.json" 2>&1 | tee "$OUT/8b.txt" || status=1

echo "== 3. rt train on cuda in bf16: LoRA and full, 5 steps each, outputs loaded back on cuda"
timeout 120 python3 benchmarks/train_smoke.py --device cuda --dtype bfloat16 --steps 5 \
    2>&1 | tee "$OUT/train.txt" || status=1

echo "gpu_check status: $status"
exit $status
