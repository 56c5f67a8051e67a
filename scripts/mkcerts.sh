#!/usr/bin/env bash
# mkcerts.sh: a small certificate authority and host certificates for
# migration TLS (tern vm run --tls-dir DIR), with openssl.
#
#   mkcerts.sh ca CADIR
#       a new CA: CADIR/ca.pem (the certificate every host trusts) and
#       CADIR/ca.key (keep it off the hosts)
#   mkcerts.sh host CADIR OUTDIR NAME [SAN ...] [--expired]
#       a host certificate signed by that CA for NAME (its common name and
#       DNS name), plus any further subject alternative names (IP:10.0.0.1,
#       DNS:other): OUTDIR/ca.pem, OUTDIR/host.pem, OUTDIR/host.key, which is
#       what --tls-dir wants. Valid for 825 days; --expired makes one whose
#       validity ended yesterday (for tests).
#
# Keys are ECDSA P-256; nothing is overwritten.
set -euo pipefail

die() { echo "mkcerts.sh: $*" >&2; exit 2; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"
[ $# -ge 2 ] || usage

case $1 in
ca)
	dir=$2
	[ -e "$dir/ca.pem" ] && die "$dir/ca.pem exists"
	mkdir -p "$dir"
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 -subj "/CN=tern migration CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	chmod 600 "$dir/ca.key"
	echo "$dir/ca.pem"
	;;
host)
	[ $# -ge 4 ] || usage
	cadir=$2 out=$3 name=$4
	shift 4
	expired=false
	sans="DNS:$name"
	for a in "$@"; do
		case $a in
		--expired) expired=true ;;
		IP:*|DNS:*) sans="$sans,$a" ;;
		*) die "unknown argument $a (IP:ADDR, DNS:NAME or --expired)" ;;
		esac
	done
	[ -f "$cadir/ca.pem" ] && [ -f "$cadir/ca.key" ] || die "no CA in $cadir (mkcerts.sh ca $cadir)"
	[ -e "$out/host.pem" ] && die "$out/host.pem exists"
	mkdir -p "$out"
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$out/host.key" -out "$work/host.csr" -subj "/CN=$name" \
		-addext "subjectAltName=$sans" 2>/dev/null
	chmod 600 "$out/host.key"
	# `openssl ca` because it can set any validity window (an expired one).
	touch "$work/index.txt"
	echo 01 > "$work/serial"
	cat > "$work/ca.cnf" <<EOF
[ ca ]
default_ca = tern
[ tern ]
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
x509_extensions = host
[ any ]
commonName = supplied
[ host ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
EOF
	if $expired; then
		start=$(date -u -d '-30 days' +%Y%m%d%H%M%SZ)
		end=$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)
	else
		start=$(date -u -d '-1 hour' +%Y%m%d%H%M%SZ)
		end=$(date -u -d '+825 days' +%Y%m%d%H%M%SZ)
	fi
	openssl ca -batch -notext -config "$work/ca.cnf" -cert "$cadir/ca.pem" \
		-keyfile "$cadir/ca.key" -in "$work/host.csr" -out "$out/host.pem" \
		-startdate "$start" -enddate "$end" 2>/dev/null ||
		die "openssl ca failed for $name"
	cp "$cadir/ca.pem" "$out/ca.pem"
	echo "$out/host.pem"
	;;
*)
	usage
	;;
esac
