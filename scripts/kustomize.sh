#!/usr/bin/env bash
# Renders a kustomization to stdout: scripts/kustomize.sh deploy/k8s/base (or an overlay).
# Takes the first renderer it finds: `kubectl kustomize` (kubectl embeds kustomize), a `kustomize`
# binary, else a kustomize it builds once into .cache/ with `go install` (from the Go module proxy).
# Exit code: the renderer's, or 3 when none of kubectl, kustomize and go is on PATH (the deploy
# test skips on 3 and says so in one line).
set -euo pipefail

# v5.8.1's go.mod asks for Go 1.24; v5.8.3 needs a newer Go than this project's machines have
# (1.26), so this version builds without fetching a toolchain.
KUSTOMIZE_VERSION=v5.8.1
NO_RENDERER=3

if [ $# -ne 1 ]; then
  echo "usage: scripts/kustomize.sh DIR   (a folder with a kustomization.yaml, e.g. deploy/k8s/base)" >&2
  exit 2
fi
dir=$1

if command -v kubectl >/dev/null 2>&1; then exec kubectl kustomize "$dir"; fi
if command -v kustomize >/dev/null 2>&1; then exec kustomize build "$dir"; fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir="$root/.cache/kustomize-$KUSTOMIZE_VERSION"
if [ ! -x "$bin_dir/kustomize" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "kustomize.sh: no kubectl, kustomize or go on PATH: cannot render $dir (install one of them)" >&2
    exit "$NO_RENDERER"
  fi
  echo "kustomize.sh: building kustomize $KUSTOMIZE_VERSION into ${bin_dir#"$root"/} with go install (once)" >&2
  # GOTOOLCHAIN=local: fail rather than download another Go if the module ever asks for one.
  GOBIN="$bin_dir" CGO_ENABLED=0 GOTOOLCHAIN=local go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
fi
exec "$bin_dir/kustomize" build "$dir"
