#!/usr/bin/env bash
# Build the Wiresens wheel from this checkout and apply the playbook with it.
#   scripts/ansible-deploy.sh INVENTORY [ansible-playbook options...]
#   scripts/ansible-deploy.sh ansible/inventories/cluster/hosts.yml --ask-vault-pass --check --diff
# Uses the project venv's ansible (pip install -e '.[test]'); see docs/deploy.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -lt 1 ]]; then
    echo "usage: $0 INVENTORY [ansible-playbook options...]" >&2
    exit 2
fi
inventory="$(realpath "$1")"
shift
bin="$repo/.venv/bin"
if [[ ! -x "$bin/ansible-playbook" ]]; then
    echo "no $bin/ansible-playbook: run \`make venv\` (installs the test extra with ansible)" >&2
    exit 2
fi
dist="$(mktemp -d)"
trap 'rm -rf "$dist"' EXIT
"$bin/python" -m pip wheel --no-deps --no-build-isolation -q -w "$dist" "$repo"
wheel="$(ls "$dist"/wiresens-*.whl)"
mkdir -p "$repo/dist"
cp "$wheel" "$repo/dist/"
cd "$repo/ansible"
exec "$bin/ansible-playbook" -i "$inventory" site.yml \
    -e "worker_node_wheel=$repo/dist/$(basename "$wheel")" "$@"
