#!/usr/bin/env bash
# Run Django's own staticfiles test suite (tests/staticfiles_tests from the
# Django sdist) with "collectstatic_plus" listed in front of every
# "django.contrib.staticfiles" entry, once per Django release series.
#
#   scripts/django_suite.sh [SERIES ...]     default: 4.2 5.2 6.0 6.1 (all supported)
#
# For each series: the newest patch release on the package index is used, in
# a venv .venv-django-SERIES at the repo root (this package installed with -e,
# that exact Django, plus whatever the staticfiles tests import from Django's
# test requirements). The sdist is cached in .cache/django-sdist/, its tests/
# are extracted into a temporary directory and patched by
# scripts/django_suite/patch_tests.py, and the log of the run is written to
# .cache/django-suite-SERIES.log. Prints one line per series and a closing
# "N passed, M failed" line; exits non-zero if any series failed.
#
# Environment:
#   PYTHON=/path/to/python    interpreter for the venvs (default: newest
#                             pyenv 3.12, else python3)
#   DJANGO_VERSION_5_2=5.2.7  pin a series to a release instead of the newest
#   SUITE_TIMEOUT=1800        seconds one runtests.py run may take
#   KEEP_WORKDIR=1            keep the extracted, patched tests (path printed)
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HELPERS=$ROOT/scripts/django_suite
CACHE=$ROOT/.cache
SDISTS=$CACHE/django-sdist
SUITE_TIMEOUT=${SUITE_TIMEOUT:-1800}

if [ "$#" -eq 0 ]; then
  set -- 4.2 5.2 6.0 6.1
fi
for series in "$@"; do
  if ! [[ $series =~ ^[0-9]+\.[0-9]+$ ]]; then
    echo "usage: $0 [SERIES ...]   (a series is MAJOR.MINOR, e.g. 5.2)" >&2
    exit 2
  fi
done

mkdir -p "$SDISTS"
# One run at a time per checkout: runs share venvs, caches and logs.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/django-suite.lock"
  flock 9
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/django-suite.XXXXXX")
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "${KEEP_WORKDIR:-}" ]; then
    echo "kept work directory: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
RESULTS=$WORK/results.jsonl
: >"$RESULTS"

log() { echo "[django-suite] $*"; }

pick_python() {
  if [ -n "${PYTHON:-}" ]; then
    echo "$PYTHON"
    return
  fi
  local best
  best=$(compgen -G "$HOME/.pyenv/versions/3.12.*/bin/python" | sort -V | tail -n 1) || true
  if [ -n "$best" ] && [ -x "$best" ]; then
    echo "$best"
  else
    command -v python3
  fi
}

# sdist_version FILE: the version in an sdist's file name.
sdist_version() {
  basename "$1" | sed -E 's/^[Dd]jango-(.*)\.tar\.gz$/\1/'
}

# store_sdist FILE: move a downloaded sdist into the cache (atomically, so an
# interrupted run never leaves a truncated archive there); print its path.
store_sdist() {
  local name
  name=$(basename "$1")
  mv "$1" "$SDISTS/.$name.part"
  mv "$SDISTS/.$name.part" "$SDISTS/$name"
  echo "$SDISTS/$name"
}

# download_sdist SPEC PY: pip-download the sdist matching SPEC (e.g.
# django==5.2.19 or django==5.2.*) into the cache; print its path.
download_sdist() {
  local spec=$1 py=$2 tmp found
  tmp=$(mktemp -d "$WORK/download.XXXXXX")
  "$py" -m pip download -q --no-binary :all: --no-deps -d "$tmp" "$spec" >&2
  found=$(find "$tmp" -maxdepth 1 -iname 'django-*.tar.gz' | head -n 1)
  [ -n "$found" ] || { echo "pip saved no sdist for $spec" >&2; return 1; }
  store_sdist "$found"
}

# newest_release SERIES PY: the newest final release of SERIES on the index
# (asked with pip index, else pip download), else the newest cached sdist.
newest_release() {
  local series=$1 py=$2 pin_var pattern version="" file
  pin_var=DJANGO_VERSION_${series//./_}
  if [ -n "${!pin_var:-}" ]; then
    echo "${!pin_var}"
    return
  fi
  pattern="^${series//./\\.}(\.[0-9]+)?$"
  version=$("$py" -m pip index versions django 2>/dev/null |
    sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' |
    grep -E "$pattern" | sort -V | tail -n 1) || true
  if [ -z "$version" ]; then
    log "pip index gave no $series release; asking pip download" >&2
    if file=$(download_sdist "django==$series.*" "$py" 2>/dev/null); then
      version=$(sdist_version "$file")
    fi
  fi
  if [ -z "$version" ]; then
    version=$(find "$SDISTS" -maxdepth 1 -iname "django-$series*.tar.gz" |
      while read -r file; do sdist_version "$file"; done |
      grep -E "$pattern" | sort -V | tail -n 1) || true
    [ -n "$version" ] && log "index not reachable; using cached sdist $version" >&2
  fi
  [ -n "$version" ] || { echo "no Django $series release found" >&2; return 1; }
  echo "$version"
}

# sdist_path VERSION PY: download the sdist once, print its path.
sdist_path() {
  local version=$1 py=$2 found
  found=$(find "$SDISTS" -maxdepth 1 -iname "django-$version.tar.gz" | head -n 1)
  if [ -z "$found" ]; then
    log "downloading the Django $version sdist" >&2
    found=$(download_sdist "django==$version" "$py")
  fi
  echo "$found"
}

# ensure_venv VENV VERSION EXTRAS_FILE: create the venv and install into it,
# unless its stamp says the same things are installed already.
ensure_venv() {
  local venv=$1 version=$2 extras_file=$3 base stamp want
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "" 2>/dev/null; then
    base=$(pick_python)
    log "creating $(basename "$venv") with $("$base" -V 2>&1) ($base)"
    rm -rf "$venv"
    "$base" -m venv "$venv"
  fi
  stamp=$venv/.django-suite-stamp
  want=$({
    "$venv/bin/python" -VV
    echo "django==$version"
    cat "$extras_file"
    cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" 2>/dev/null
  } | cksum)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && venv_is_current "$venv" "$version"; then
    return
  fi
  log "installing collectstatic-plus (-e), Django $version$(
    [ -s "$extras_file" ] && printf ' and %s' "$(paste -sd' ' "$extras_file")"
  ) into $(basename "$venv")"
  rm -f "$stamp"
  local -a extras=()
  mapfile -t extras <"$extras_file"
  "$venv/bin/python" -m pip install -q -e "$ROOT" "django==$version" "${extras[@]}"
  venv_is_current "$venv" "$version" || {
    echo "the venv does not import Django $version and this checkout's collectstatic_plus" >&2
    return 1
  }
  echo "$want" >"$stamp"
}

# venv_is_current VENV VERSION: Django is VERSION and collectstatic_plus comes
# from this checkout (checked from outside the repo, as the suite runs).
venv_is_current() {
  local got
  got=$(cd "$WORK" && env -u PYTHONPATH "$1/bin/python" -c '
import os, django, collectstatic_plus
print(django.get_version(), os.path.dirname(os.path.dirname(os.path.realpath(collectstatic_plus.__file__))))
' 2>/dev/null) || return 1
  [ "$got" = "$2 $(realpath "$ROOT")" ]
}

run_series() {
  local series=$1 venv=$ROOT/.venv-django-$1 py version sdist dir tests extras
  local logfile=$CACHE/django-suite-$series.log rc
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "" 2>/dev/null; then
    py=$venv/bin/python
  else
    py=$(pick_python)
  fi
  version=$(newest_release "$series" "$py")
  echo "$version" >"$WORK/version-$series"
  sdist=$(sdist_path "$version" "$py")

  dir=$WORK/django-$version
  mkdir -p "$dir"
  tar -xzf "$sdist" -C "$dir" --strip-components=1 --wildcards '*/tests/*'
  tests=$dir/tests
  [ -f "$tests/runtests.py" ] || { echo "no tests/runtests.py in $sdist" >&2; return 1; }

  extras=$WORK/extras-$series.txt
  "$py" "$HELPERS/patch_tests.py" requirements "$tests" >"$extras"
  ensure_venv "$venv" "$version" "$extras"
  py=$venv/bin/python

  "$py" "$HELPERS/patch_tests.py" patch "$tests"

  log "running Django $version's staticfiles_tests (log: ${logfile#"$ROOT"/})"
  set +e
  (
    cd "$tests" &&
      exec env -u PYTHONPATH -u DJANGO_SETTINGS_MODULE PYTHONDONTWRITEBYTECODE=1 \
        timeout --kill-after=30 "$SUITE_TIMEOUT" \
        "$py" runtests.py staticfiles_tests --settings=test_sqlite \
        --parallel=1 -v 1 --noinput
  ) >"$logfile" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    printf "\n(stopped after %ss by timeout)\n" "$SUITE_TIMEOUT" >>"$logfile"
  fi
  echo "$rc" >"$WORK/rc-$series"
}

status=0
for series in "$@"; do
  log "Django $series"
  set +e
  (
    set -euo pipefail
    run_series "$series"
  )
  setup_rc=$?
  set -e
  version=$(cat "$WORK/version-$series" 2>/dev/null || echo "$series")
  logfile=$CACHE/django-suite-$series.log
  if [ "$setup_rc" -eq 0 ] && [ -f "$WORK/rc-$series" ]; then
    rc=$(cat "$WORK/rc-$series")
  else
    echo "setting up Django $version failed (exit code $setup_rc); see the output above" >"$logfile"
    rc=$((setup_rc ? setup_rc : 1))
  fi
  pybin=$ROOT/.venv-django-$series/bin/python
  "$pybin" -c "" 2>/dev/null || pybin=$(pick_python)
  "$pybin" "$HELPERS/summarize.py" series "$logfile" "$rc" "django $version" "$RESULTS" ||
    status=1
done

echo
"$(pick_python)" "$HELPERS/summarize.py" total "$RESULTS" || status=1
exit "$status"
