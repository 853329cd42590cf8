#!/usr/bin/env bash
# Run dicomnb's whole test suite on a fresh Debian machine.
# Installs what the tests need (Debian packages, a virtual environment, the package with its
# test extras), checks the code (ruff, mypy), then runs pytest. Extra arguments go to pytest.
# With CI=true, a test that needs a missing peer fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

# Peers and tools the tests run for real (chromium: the browser tests drive Debian's, never a
# browser that Playwright downloads).
APT_PACKAGES=(dcmtk zip orthanc orthanc-dicomweb chromium)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV="${DICOMNB_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,notebook,network,codecs]" 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c "import dicomnb" # the install worked

echo "== ruff"
"$VENV/bin/ruff" check dicomnb tests benchmarks
echo "== mypy"
"$VENV/bin/mypy" --no-error-summary
echo "== pytest"
set +e
"$VENV/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
