#!/usr/bin/env bash
# The style checks of `make style` and `make test`, one "ok - " or
# "not ok - " line per file and check:
#   clang-format   every .c/.h of hsm/ vault/ policy/ api/ tests/ is
#                  formatted as .clang-format says (--dry-run -Werror);
#   banned calls   no strcpy/strcat/sprintf/vsprintf/gets/atoi/atol/atoll
#                  in the product (STYLE.md rule 3; use str_fmt, parse_*);
#   clang-tidy     the .clang-tidy check list on every product .c, with the
#                  Makefile's compile flags, findings are errors.
# Debian bookworm's clang-format and clang-tidy (14) are the reference.
#
#   bash tests/style.sh              check (exit 1 on any "not ok")
#   bash tests/style.sh --fix        reformat the files in place, then check
#   bash tests/style.sh --analyzer   also run clang-analyzer-* (slow)
#   bash tests/style.sh FILE...      check only these files
set -u
cd "$(dirname "$0")/.." || exit 2

fix=0
analyzer=0
files=()
for a in "$@"; do
	case "$a" in
	--fix) fix=1 ;;
	--analyzer) analyzer=1 ;;
	-*) echo "usage: $0 [--fix] [--analyzer] [FILE...]" >&2; exit 2 ;;
	*) files+=("$a") ;;
	esac
done

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
CLANG_TIDY=${CLANG_TIDY:-clang-tidy}
JOBS=${STYLE_JOBS:-2}

# Tracked files and new ones not ignored yet; never node_modules or the
# fuzz corpora (data, not code).
list_sources() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files --cached --others --exclude-standard -- \
		    hsm vault policy api tests
	else
		find hsm vault policy api tests -type f
	fi | grep -E '\.[ch]$' | grep -vE '(^|/)node_modules/|^tests/fuzz/corpus/' |
	    while read -r f; do [ -f "$f" ] && echo "$f"; done | sort -u
}

if [ ${#files[@]} -eq 0 ]; then
	mapfile -t files < <(list_sources)
fi
mapfile -t product < <(printf '%s\n' "${files[@]}" |
    grep -E '^(hsm|vault|policy|api)/[^/]+\.[ch]$')

failed=0
for tool in "$CLANG_FORMAT" "$CLANG_TIDY"; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "not ok - $tool is installed (make deps)"
		failed=1
	fi
done
[ $failed -eq 0 ] || exit 1

# a .clang-format that cannot be read would make every file pass
if ! "$CLANG_FORMAT" --style=file --dump-config hsm/buf.h >/dev/null 2>&1; then
	echo "not ok - clang-format reads .clang-format"
	"$CLANG_FORMAT" --style=file --dump-config hsm/buf.h 2>&1 >/dev/null |
	    sed 's/^/#   /'
	exit 1
fi
if [ $fix -eq 1 ]; then
	printf '%s\n' "${files[@]}" | xargs -r -P "$JOBS" -n 8 "$CLANG_FORMAT" -i
fi

# clang-format: a few runs (one at a time: their stderr must not mix), then one line per file.  Each
# violation is a "FILE:LINE:COL: warning:" line (-Werror would turn it into
# an error and, in clang-format 14, stop at the first bad file).
fmt_log=$(printf '%s\n' "${files[@]}" |
    xargs -r -n 16 "$CLANG_FORMAT" --dry-run --ferror-limit=1 2>&1 |
    grep -E '^[^ ]+:[0-9]+:[0-9]+: (error|warning): ' | cut -d: -f1 | sort -u)
for f in "${files[@]}"; do
	if ! printf '%s\n' "$fmt_log" | grep -qxF -- "$f"; then
		echo "ok - clang-format: $f"
	else
		echo "not ok - clang-format: $f"
		"$CLANG_FORMAT" "$f" | diff -u "$f" - | sed -n '3,14p' | sed 's/^/#   /'
		failed=1
	fi
done

# Banned calls in the product: a grep over code with comments and string
# literals blanked, so that a comment may still name them.
banned='(^|[^A-Za-z0-9_.>])(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atoll)[[:space:]]*\('
strip_c() {
	# drop /* */ and // comments and "..." / '...' literals, keep line numbers
	perl -0777 -pe 's{/\*.*?\*/}{ my $c = $&; $c =~ s/[^\n]//g; $c }gse;
	    s{//[^\n]*}{}g; s{"(\\.|[^"\\\n])*"}{""}g; s{'"'"'(\\.|[^'"'"'\\\n])*'"'"'}{0}g' "$1"
}
for f in "${product[@]}"; do
	lines=$(strip_c "$f" | grep -nE "$banned" | cut -d: -f1)
	if [ -z "$lines" ]; then
		echo "ok - banned calls: $f"
	else
		echo "not ok - banned calls: $f"
		for l in $lines; do
			printf '#   %s:%s: %s\n' "$f" "$l" "$(sed -n "${l}p" "$f")"
		done
		failed=1
	fi
done

# No merge left half done: conflict markers in any tracked text file.
marks=$(git ls-files -z 2>/dev/null | xargs -0 -r grep -lIE '^(<<<<<<< |>>>>>>> )' -- 2>/dev/null)
if [ -z "$marks" ]; then
	echo "ok - no merge conflict markers"
else
	echo "not ok - no merge conflict markers"
	printf '#   %s\n' $marks
	failed=1
fi

# clang-tidy with the Makefile's flags (its PKGS), two files at a time.
pkgs=$(sed -n 's/^PKGS[[:space:]]*:=[[:space:]]*//p' Makefile)
# shellcheck disable=SC2086
tidy_flags="-std=c11 -D_GNU_SOURCE -I. $(pkg-config --cflags $pkgs 2>/dev/null)"
TIDY_CHECKS=
if [ $analyzer -eq 1 ]; then
	TIDY_CHECKS="--checks=clang-analyzer-core.*,clang-analyzer-unix.*,clang-analyzer-deadcode.*,clang-analyzer-security.insecureAPI.strcpy"
fi
out=$(mktemp -d /tmp/p11vault-tidy.XXXXXX)
trap 'rm -rf "$out"' EXIT
# shellcheck disable=SC2317  # called through xargs
tidy_one() {  # FILE: writes $out/NAME.log and $out/NAME.rc
	local f=$1 n
	n=$(printf '%s' "$f" | tr '/' '_')
	# shellcheck disable=SC2086
	"$CLANG_TIDY" --quiet ${TIDY_CHECKS:+"$TIDY_CHECKS"} "$f" -- $tidy_flags \
	    >"$out/$n.log" 2>&1
	echo $? >"$out/$n.rc"
}
export -f tidy_one
export CLANG_TIDY TIDY_CHECKS tidy_flags out
mapfile -t tidy_files < <(printf '%s\n' "${product[@]}" | grep '\.c$')
# shellcheck disable=SC2016  # $1 is the inner shell's
printf '%s\n' "${tidy_files[@]}" | xargs -r -P "$JOBS" -I{} bash -c 'tidy_one "$1"' _ {}
for f in "${tidy_files[@]}"; do
	n=$(printf '%s' "$f" | tr '/' '_')
	if [ "$(cat "$out/$n.rc" 2>/dev/null)" = 0 ] &&
	    ! grep -qE '(warning|error): ' "$out/$n.log"; then
		echo "ok - clang-tidy: $f"
	else
		echo "not ok - clang-tidy: $f"
		grep -E '(warning|error): ' "$out/$n.log" | sort -u |
		    sed -e "s|^$PWD/||" -e 's|^\./||' -e 's/,-warnings-as-errors\]/]/' \
		    -e 's/^/#   /'
		failed=1
	fi
done

exit $failed
