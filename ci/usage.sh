# Sourced first by every ci/ script, before it does anything: --help (-h) prints the script's
# header comment and --version the version of this source tree (cmake/version.cmake, the one
# the binaries carry); both exit 0.
for ci_arg in "$@"; do
  case $ci_arg in
    -h | --help)
      sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
      exit 0 ;;
    --version)
      ci_root=$(cd "$(dirname "$0")/.." && pwd)
      echo "ci/$(basename "$0") $(cmake -DSRC="$ci_root" -P "$ci_root/cmake/version.cmake")"
      exit 0 ;;
  esac
done
unset ci_arg
