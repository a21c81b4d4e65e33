#!/bin/sh
# make install: dist/cni-bin into BINDIR ($(DESTDIR)$(PREFIX)/bin), docs/build.md.
#
# Every file is replaced by write-then-rename, never rewritten in place: a
# plugin running from the old binary keeps its inode (writing into it would
# fail with ETXTBSY, "text file busy"), and a runtime starting a plugin sees
# either the old file or the new one, never half of one.  Other files in BINDIR
# (the reference plugins, say) are left alone, except that our plugin names
# replace whatever had those names.
set -eu
cd "$(dirname "$0")/.."
src=dist/cni-bin
bindir=${1:?usage: install.sh BINDIR [--warm]}
warm=${2:-}
[ -f "$src/cni-multi" ] || { echo "install: $src/cni-multi is missing; run make build" >&2; exit 1; }

mkdir -p "$bindir"
tmp="$bindir/.cni-multi.$$"
trap 'rm -f "$tmp" "$bindir"/.*.$$.link' EXIT
cp "$src/cni-multi" "$tmp"
chmod 0755 "$tmp"
sync "$tmp" 2>/dev/null || true  # on disk before it has a name a runtime could exec
mv -f "$tmp" "$bindir/cni-multi"

names=""
for link in "$src"/*; do
    [ -L "$link" ] || continue
    name=$(basename "$link")
    names="$names $name"
    ln -s cni-multi "$bindir/.$name.$$.link"
    mv -Tf "$bindir/.$name.$$.link" "$bindir/$name"
done
# a name this build no longer has (a plugin dropped from it): only our own links go
for link in "$bindir"/*; do
    [ -L "$link" ] && [ "$(readlink "$link")" = cni-multi ] || continue
    case " $names " in *" $(basename "$link") "*) ;; *) rm -f "$link" ;; esac
done
echo "install: $bindir/cni-multi as:$names"
# --warm (make install without DESTDIR): the new build fills its run-in-place
# cache now, so the first pod never pays for it, and other builds' copies that
# no running plugin holds are removed (docs/build.md, "Run in place")
if [ "$warm" = --warm ]; then
    "$bindir/cni-multi" --prune-cache | sed 's/^/install: /'
fi
