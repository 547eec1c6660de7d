#!/usr/bin/env bash
# Install what tests/it/deploy.rs needs, quietly, and only what is missing (safe to re-run):
#   yamllint                        compose.yaml and the chart's values lint
#   buildah, podman, runc           build and run the image (MAILROOM_IMAGE_TEST=1)
#   helm-python-sdk (PyPI)          the Helm library: lint and render the chart offline
#   kubernetes-validate (PyPI)      Kubernetes schemas for every rendered manifest
#   docker-compose (v2)             render compose.yaml with a .env (interpolation of `$`)
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

# Docker Compose v2 renders compose.yaml with a .env (`config`, no daemon needed), which
# is how the tests check that `$` in account hashes survives the documented way. Debian
# bookworm ships only Compose v1 (different .env rules), so take trixie's static Go binary
# from its .deb without adding trixie to the system's sources.
if ! docker-compose version 2>/dev/null | grep -q 'version v\?2'; then
  echo "deploy-deps: Docker Compose v2 from Debian trixie's docker-compose package"
  work=$(mktemp -d)
  printf 'deb http://deb.debian.org/debian trixie main\n' > "$work/sources.list"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  apt_opts=(-o APT::Sandbox::User=root -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$work" && apt-get "${apt_opts[@]}" download -qq docker-compose 2>/dev/null)
  dpkg-deb -x "$work"/docker-compose_*.deb "$work/x"
  install -m 0755 "$work/x/usr/libexec/docker/cli-plugins/docker-compose" /usr/local/bin/docker-compose
  rm -rf "$work"
fi
