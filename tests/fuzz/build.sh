#!/usr/bin/env bash
# tests/fuzz/build.sh — builds the libFuzzer targets (clang, ASan+UBSan)
# into build/fuzz/. Product objects (every .c of hsm/ vault/ policy/ api/
# except api/main.c) are compiled once with -fsanitize=fuzzer-no-link and
# rebuilt when their source or any header is newer. Usage:
#   bash tests/fuzz/build.sh [TARGET...]   (default: all tests/fuzz/fuzz_*.c)
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-$(command -v clang-14 || command -v clang)}
# the Makefile's PKGS, the one list
PKGS=$(sed -n 's/^PKGS[[:space:]]*:=[[:space:]]*//p' Makefile)
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Wno-unused-command-line-argument -I. $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -ldl -lpthread"
OUT=build/fuzz
mkdir -p "$OUT/obj"

srcs=$(ls hsm/*.c vault/*.c policy/*.c api/*.c | grep -v '^api/main\.c$')
newest_hdr=$(ls -t */*.h tests/fuzz/*.h | head -1)
todo=()
for s in $srcs; do
	o="$OUT/obj/${s//\//_}"; o="${o%.c}.o"
	if [[ ! -f $o || $s -nt $o || $newest_hdr -nt $o ]]; then todo+=("$s"); fi
done
if ((${#todo[@]})); then
	printf '%s\n' "${todo[@]}" | xargs -P "$(nproc)" -I{} sh -c \
	    'o="'"$OUT"'/obj/$(echo {} | tr / _)"; o="${o%.c}.o"; '"$CC $CFLAGS $SAN"' -fsanitize=fuzzer-no-link -c {} -o "$o"'
fi
objs=$(for s in $srcs; do o="$OUT/obj/${s//\//_}"; echo "${o%.c}.o"; done)

targets=("$@")
if ((${#targets[@]} == 0)); then
	for f in tests/fuzz/fuzz_*.c; do t=${f##*/}; targets+=("${t%.c}"); done
fi
for t in "${targets[@]}"; do
	bin="$OUT/$t"
	if [[ -f $bin && ! tests/fuzz/$t.c -nt $bin ]] && \
	    [[ -z $(find $objs tests/fuzz/fuzz_env.h -newer "$bin" 2>/dev/null | head -1) ]]; then
		continue
	fi
	# the policy-only targets link policy/ alone (no vault, no HSM)
	case $t in
	fuzz_b64url|fuzz_jwt) link=$(echo "$objs" | grep -E '/(policy_|hsm_(base|buf|pkey)\.o$)') ;;
	*) link=$objs ;;
	esac
	$CC $CFLAGS -Werror $SAN -fsanitize=fuzzer "tests/fuzz/$t.c" $link $LIBS -o "$bin"
done
