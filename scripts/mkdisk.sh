#!/usr/bin/env bash
# mkdisk.sh OUT SIZE [DIR]: makes an ext4 disk image for a guest, without
# root and without mounting anything: a sparse file of SIZE (e.g. 64M),
# formatted with mkfs.ext4 -d DIR so that it starts out holding DIR's files.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 OUT SIZE [DIR]" >&2
	exit 2
fi
out=$1 size=$2 dir=${3:-}
command -v mkfs.ext4 >/dev/null || { echo "$0: mkfs.ext4 is missing (apt-get install e2fsprogs)" >&2; exit 1; }
if [ -n "$dir" ] && [ ! -d "$dir" ]; then
	echo "$0: $dir is not a directory" >&2
	exit 1
fi
rm -f "$out"
truncate -s "$size" "$out"
# root_owner: files belong to root in the guest whoever runs this.
mkfs.ext4 -q -F -L tern -E root_owner=0:0 ${dir:+-d "$dir"} "$out"
echo "$out: $(du -h --apparent-size "$out" | cut -f1) ext4${dir:+ from $dir}"
