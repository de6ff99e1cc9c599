#!/bin/sh
# Rebuild the intake page's HPKE bundle from npm (the only time npm is needed;
# the bundle is committed and the page loads nothing from elsewhere):
#   sh tools/vendor-hpke/build.sh
# Then update the versions in src/backchannel/relay/static/intake/hpke.LICENSE
# and run the interop tests (tests/intake/test_browser.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../../src/backchannel/relay/static/intake/hpke.min.js"
cd "$here"
npm ci --no-audit --no-fund
npx esbuild entry.js --bundle --format=esm --minify --legal-comments=eof \
  --target=es2020 --outfile="$out"
rm -rf node_modules
