#!/usr/bin/env bash
# Install what tests/deploy.rs needs, quietly, and only what is missing (safe to re-run):
#   yamllint                        compose.yaml and the chart's values lint
#   buildah, podman, runc           build and run the image (MAILROOM_IMAGE_TEST=1)
#   helm-python-sdk (PyPI)          the Helm library: lint and render the chart offline
#   kubernetes-validate (PyPI)      Kubernetes schemas for every rendered manifest
set -euo pipefail

missing=()
for tool in yamllint buildah podman runc; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "deploy-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import helm_python, kubernetes_validate, yaml' >/dev/null 2>&1; then
  echo "deploy-deps: pip install helm-python-sdk kubernetes-validate"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    'helm-python-sdk>=0.2.2,<0.3' 'kubernetes-validate>=1.37,<2' 'pyyaml>=6'
fi
