#!/usr/bin/env bash
# Every path, make target, ZKCHAT_ variable and relative link in README.md
# and doc/*.md must exist (make doccheck).
cd "$(dirname "$0")/.." || exit 2
export LC_ALL=C.UTF-8
rc=0
bad() { echo "$1: $2"; rc=1; }
files=$(git ls-files)
targets=" $(sed -n 's/^\([a-z][a-z-]*\):.*/\1/p' Makefile | tr '\n' ' ') "
slugs() { sed -n 's/^#\{1,6\} \(.*\)/\1/p' "$1" | sed -E 's/.*/\L&/; s/[^[:alnum:] _-]//g; s/ /-/g'; }
for f in README.md doc/*.md; do
	dir=$(dirname "$f")
	# Paths (globs too), not under another folder; a trailing .Name is Go's.
	for p in $(grep -oE '(^|[^/.[:alnum:]_$-])(\./)?(scripts|cmd|internal|deploy|testdata|bridge|client|kafka|zookeeper|manager|protocol)/[][A-Za-z0-9_.*/-]*[A-Za-z0-9_*]' "$f" |
		sed -E 's|^[^a-z.]?(\./)?||' | sort -u); do
		compgen -G "$(sed -E 's/\.[A-Z][A-Za-z]*$//' <<<"$p")" >/dev/null || bad "$f" "no such path: $p"
	done
	for g in $(grep -oE '\b[a-z_0-9-]+\.(go|sh)\b' "$f" | sort -u); do
		grep -qE "(^|/)$g\$" <<<"$files" || bad "$f" "no such file: $g"
	done
	for t in $(grep -oE '(`|^)make [a-z][a-z-]*' "$f" | sed 's/.* //' | sort -u); do
		[[ $targets == *" $t "* ]] || bad "$f" "no make target: $t"
	done
	for v in $(grep -oE 'ZKCHAT_[A-Z0-9_]*[A-Z0-9]' "$f" | sort -u); do
		git grep -q "$v" -- '*.go' Makefile docker-compose.yml scripts .ci || bad "$f" "variable used nowhere: $v"
	done
	for l in $(grep -oE '\]\([^)[:space:]]+\)' "$f" | sed -E 's/^\]\(//; s/\)$//' | grep -vE '^[a-z]+:' | sort -u); do
		path=${l%%#*} anchor=; [[ $l == *'#'* ]] && anchor=${l#*#}
		target=$f; [ -n "$path" ] && target=$dir/$path
		[ -e "$target" ] || { bad "$f" "broken link: $l"; continue; }
		[ -z "$anchor" ] || slugs "$target" | grep -qxF "$anchor" || bad "$f" "no anchor: $l"
	done
done
exit $rc
