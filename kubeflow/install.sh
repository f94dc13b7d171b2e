#!/usr/bin/env bash
# The one install of Graft's pinned environment, used by `make setup` (into .venv) and by
# kubeflow/Dockerfile (into the image's Python), so that the two cannot drift apart.
#
#   kubeflow/install.sh PYTHON [deps|project|all|gpu]
#
# deps: the exact, tested set from requirements.lock, without re-resolving (a resolver would
# downgrade tensorflow-hub to TFX's 0.15 pin, which fails to import on TF 2.16). Installed by uv
# (pinned in the lock; pip installs it first): it fetches and unpacks in parallel, 49 s for the
# set against pip's 112 s, measured side by side into fresh venvs on 2 cores, caches cold, bytecode
# compiled either way.
# project: Graft itself (editable, so the checkout or the image's /graft is what runs) and a
# check that the stack imports. all (default): both. gpu (the image's, not make setup's): the CUDA and
# cuDNN wheels of requirements-gpu.lock (the image then checks them: python -m kubeflow.gpu_libraries).
# WHEELHOUSE (optional): a folder or URL of wheels to install from instead of PyPI (an offline
# image build: kubeflow/build_local_image.sh).
set -euo pipefail
py="${1:?usage: kubeflow/install.sh PYTHON [deps|project|all|gpu]}"
if [[ -n ${WHEELHOUSE:-} ]]; then
  export PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELHOUSE" UV_NO_INDEX=1 UV_FIND_LINKS="$WHEELHOUSE"
  host="${WHEELHOUSE#*://}" && export PIP_TRUSTED_HOST="${host%%[:/]*}"
fi
step="${2:-all}"
cd "$(dirname "$0")/.."

# uv, at the lock's version, into $py (the one pip call); then every install goes through it.
uv_pin=$(grep -E '^uv==' requirements.lock) || { echo "error: requirements.lock pins no uv" >&2; exit 1; }
"$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('uv') != sys.argv[1])" "${uv_pin#uv==}" 2>/dev/null \
  || "$py" -m pip install -q "$uv_pin"
install() { "$py" -m uv pip install --quiet --python "$py" --no-deps "$@"; }

if [[ $step == deps || $step == all ]]; then
  install --compile-bytecode -r requirements.lock
fi
if [[ $step == project || $step == all ]]; then
  install --no-build-isolation -e .
  TF_USE_LEGACY_KERAS=1 "$py" -c "import tfx, tensorflow_transform, tensorflow_model_analysis, tensorflow_hub, tf_keras, components, pipeline.pipeline" 2>/dev/null \
    || { echo "error: the environment of $py does not import TFX and Graft; delete it and retry" >&2; exit 1; }
fi
if [[ $step == gpu ]]; then
  install --compile-bytecode -r requirements-gpu.lock  # checked by python -m kubeflow.gpu_libraries
fi
