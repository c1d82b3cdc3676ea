# Sourced by the test scripts: counters and checks that print one line each.
#   expect DESCRIPTION COMMAND...   runs the command: "ok - ..." (pass) or "FAIL - ..." (fail)
#   ok / bad DESCRIPTION            counts and prints a result decided by the caller
#   contains FILE TEXT              the file holds the text (fixed string)
#   not COMMAND...                  the command fails
# The script ends with its own summary from $pass and $fail.
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
expect() { # description, command...
  local d=$1; shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}
contains() { grep -qF -- "$2" "$1"; }
not() { ! "$@"; }
