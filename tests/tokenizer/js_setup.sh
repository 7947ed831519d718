# js_setup.sh - sourced by run_parity.sh and run_gemma_parity.sh.
# js_require SHARED: exit 77 (skipped) without the shared folder or node/npm.
# js_install WORK PKG@VERSION...: installs the pinned npm packages under WORK once (exit 77 when npm cannot).
js_require() {
  if [ ! -d "$1/tokenizers" ]; then echo "shared data not found at $1: skipping"; exit 77; fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then echo "node/npm not installed: skipping"; exit 77; fi
}
js_install() {
  local work=$1 p missing=0; shift
  for p in "$@"; do [ -f "$work/node_modules/${p%@*}/package.json" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  mkdir -p "$work"
  if ! npm install --silent --no-audit --no-fund --prefix "$work" "$@" >"$work/npm.log" 2>&1; then
    echo "npm could not install $* (registry unreachable?): skipping"; tail -3 "$work/npm.log"; exit 77
  fi
}
